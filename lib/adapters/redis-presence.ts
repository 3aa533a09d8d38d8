import type { Cluster, ClusterOptions } from 'ioredis'
import { isCluster, perKey, type RedisClient, type RedisKeys } from './redis-keys.ts'
import type { FastifyBaseLogger } from 'fastify'
import type { InstanceInfo, PresenceEntry, PresenceHost, PresenceManager } from './adapter.ts'
import type { Session } from '../resume/sessions.ts'

/*
 * Which connections live on which instance, in Redis (names in redis-keys.ts: an instance's
 * keys share the hash tag `{<id>}`, the set of instances stands alone):
 * - `<prefix>:instance:{<id>}`: the instance is alive; expires `ttl` ms after its last heartbeat;
 * - `<prefix>:instances`: the set of instance ids (the dead are pruned by whoever notices),
 *   expiring as the presence does, `ttl + retention` after the last heartbeat of any instance;
 * - `<prefix>:presence:{<id>}`: hash clientId → `{"u":userId,"r":[rooms]}` (plus metadata and
 *   connection time for resumable connections, their generation once resumed, and the count of a numbered client's frames,
 *   written again with each heartbeat when it changed), kept `retention` ms longer than the
 *   instance's own key, so that the clients of an instance that died can resume elsewhere;
 * - `<prefix>:users:{<id>}`: hash userId → the user's connection count on the instance, expiring with it.
 * An instance that dies without a shutdown drops out when its keys expire; a graceful
 * close removes them at once. Writes never wait; after an outage (or a Redis that came
 * back empty) the instance writes its whole presence again.
 *
 * ioredis runs a command again when the connection it went out on closed before the reply
 * (a Redis: `autoResendUnfulfilledCommands`, before `ready`; a Cluster node: `retryDelayOnFailover`
 * later, the Cluster staying ready), so a write may happen twice (a count incremented twice), or
 * after a later one (a connection's entry after its removal). After a Redis reconnects, the
 * rewrite on `ready` comes after its resends; after a Cluster lost a node's connection, the
 * whole presence is written again once the retries are over (`#nodeLost`).
 */
/** The least wait after a Cluster lost a node's connection before the presence is written again. */
const HEAL_AFTER_MS = 1000

/**
 * A user's connection count on an instance, one less, in one step: the field goes at zero,
 * and a hash this makes again (it went meanwhile: the instance closed, or Redis came back
 * empty) is never left without an expiry.
 */
const DECREMENT = `if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1`

export class RedisPresence implements PresenceManager {
  #redis: RedisClient
  #keys: RedisKeys
  #ttl: number
  /** How long the presence of a dead instance is kept for resumes (`reconnect.maxDisconnect`), known from the start on. */
  #retention = 0
  #host: PresenceHost | undefined = undefined
  #log: FastifyBaseLogger | undefined = undefined
  #timer: NodeJS.Timeout | undefined = undefined
  /** The rewrite after a Cluster lost a node's connection, while it waits for the retries. */
  #healTimer: NodeJS.Timeout | undefined = undefined
  /** Connections registered in this turn of the event loop, not written yet. */
  #arrived = new Map<string, PresenceEntry>()
  failedWrites = 0

  constructor (redis: RedisClient, keys: RedisKeys, ttl: number) {
    this.#redis = redis
    this.#keys = keys
    this.#ttl = ttl
  }

  /** The instance's id (the manager's), known from the start on. */
  #id = ''

  /**
   * Writes this instance's presence, refreshes it every third of the ttl, and writes it
   * all again whenever the connection is back (Redis may have lost it all meanwhile).
   * Called after the adapter connected (or failed to: the connection keeps trying).
   */
  start (host: PresenceHost): void {
    this.#host = host
    this.#id = host.instanceId
    this.#retention = host.retention
    this.#log = host.log
    this.#timer = setInterval(() => { this.#beat() }, Math.max(10, Math.floor(this.#ttl / 3))).unref()
    this.#redis.on('ready', this.#rewrite)
    if (isCluster(this.#redis)) this.#redis.on('-node', this.#nodeLost)
    this.#rewrite()
  }

  /**
   * A Cluster closed its connection to a node: the commands that were waiting on it for a
   * reply are sent again after `retryDelayOnFailover` (perhaps after newer ones, perhaps
   * done already). Once they are, the whole presence is written again, in one MULTI.
   */
  #nodeLost = (): void => {
    // after the retries of the last node lost, if several go
    clearTimeout(this.#healTimer)
    // a command is tried again up to maxRedirections times, retryDelayOnFailover apart (a Cluster
    // has both, its defaults 16 and 100 ms)
    const { retryDelayOnFailover, maxRedirections } = (this.#redis as Cluster).options as Required<Pick<ClusterOptions, 'retryDelayOnFailover' | 'maxRedirections'>>
    this.#healTimer = setTimeout(() => {
      this.#healTimer = undefined
      this.#rewrite()
    }, Math.max(HEAL_AFTER_MS, retryDelayOnFailover * maxRedirections)).unref()
  }

  /** Writes everything again: at start, and after Redis was away (it may have lost it all). */
  #rewrite = (): void => {
    const host = this.#host!
    const presence = this.#keys.presence(this.#id)
    const users = this.#keys.users(this.#id)
    // every connection, those waiting for the turn's end included
    this.#arrived.clear()
    const multi = this.#redis.multi().del(presence, users)
    for (const conn of host.connections()) {
      multi.hset(presence, conn.id, encodeEntry(conn))
      if (conn.userId !== undefined) multi.hincrby(users, conn.userId, 1)
    }
    multi.pexpire(presence, this.#ttl + this.#retention).pexpire(users, this.#ttl)
    multi.set(this.#keys.instance(this.#id), '1', 'PX', this.#ttl)
    multi.exec().catch(this.#onFailure)
    // the set is in a slot of its own: a MULTI of its own
    this.#redis.multi().sadd(this.#keys.instances, this.#id).pexpire(this.#keys.instances, this.#ttl + this.#retention).exec().catch(this.#onFailure)
  }

  #beat (): void {
    const multi = this.#redis.multi()
    const presence = this.#keys.presence(this.#id)
    // protocol 2: the counts of numbered clients that changed, so that a crash loses little of them
    for (const conn of this.#host!.connections()) {
      const upstream = conn.session?.upstream
      if (upstream !== undefined && upstream.received !== upstream.recorded) multi.hset(presence, conn.id, encodeEntry(conn))
    }
    multi
      .set(this.#keys.instance(this.#id), '1', 'PX', this.#ttl)
      .pexpire(presence, this.#ttl + this.#retention)
      .pexpire(this.#keys.users(this.#id), this.#ttl)
      .exec().catch(this.#onFailure)
    this.#redis.pexpire(this.#keys.instances, this.#ttl + this.#retention).catch(this.#onFailure)
  }

  /** Writes the entry at the end of this turn of the event loop, with the others of the turn. */
  connected (conn: PresenceEntry): void {
    if (this.#arrived.size === 0) setImmediate(this.#flush)
    this.#arrived.set(conn.id, conn)
  }

  /**
   * The entries of one turn, with their keys' expiry (the instance may die before its next
   * heartbeat): one MULTI for all, not one per connection (85 µs each in a reconnect storm).
   */
  #flush = (): void => {
    if (this.#arrived.size === 0) return
    const presence = this.#keys.presence(this.#id)
    const users = this.#keys.users(this.#id)
    const fields: string[] = []
    const multi = this.#redis.multi()
    let withUsers = false
    for (const conn of this.#arrived.values()) {
      fields.push(conn.id, encodeEntry(conn))
      if (conn.userId === undefined) continue
      multi.hincrby(users, conn.userId, 1)
      withUsers = true
    }
    this.#arrived.clear()
    multi.hset(presence, ...fields).pexpire(presence, this.#ttl + this.#retention)
    if (withUsers) multi.pexpire(users, this.#ttl)
    multi.exec().catch(this.#onFailure)
  }

  roomsChanged (conn: PresenceEntry): void {
    // not written yet: it will be, as it is then
    if (this.#arrived.get(conn.id) === conn) return
    // with the expiry: the hash may be gone (a Redis that came back empty) and is made again here
    const presence = this.#keys.presence(this.#id)
    this.#redis.multi().hset(presence, conn.id, encodeEntry(conn)).pexpire(presence, this.#ttl + this.#retention).exec().catch(this.#onFailure)
  }

  disconnected (conn: PresenceEntry): void {
    // gone within the turn it came: nothing was written
    if (this.#arrived.get(conn.id) === conn) {
      this.#arrived.delete(conn.id)
      return
    }
    this.#redis.hdel(this.#keys.presence(this.#id), conn.id).catch(this.#onFailure)
    const userId = conn.userId
    if (userId === undefined) return
    // only this instance writes its users' counts: the last connection of a user removes the field
    this.#redis.eval(DECREMENT, 1, this.#keys.users(this.#id), userId, this.#ttl).catch(this.#onFailure)
  }

  /**
   * The other instances, live or dead; the set is pruned of those whose presence is gone too.
   */
  async #instances (): Promise<Array<{ id: string, alive: boolean }>> {
    const ids = (await this.#redis.smembers(this.#keys.instances)).filter(id => id !== this.#id)
    if (ids.length === 0) return []
    const answers = await perKey(this.#redis, ids.flatMap(id => [['exists', this.#keys.instance(id)], ['exists', this.#keys.presence(id)]]))
    const found: Array<{ id: string, alive: boolean }> = []
    const gone: string[] = []
    ids.forEach((id, i) => {
      const alive = answers[2 * i] === 1
      if (alive || answers[2 * i + 1] === 1) found.push({ id, alive })
      else gone.push(id)
    })
    if (gone.length > 0) this.#redis.srem(this.#keys.instances, ...gone).catch(this.#onFailure)
    return found
  }

  async #others (): Promise<string[]> {
    return (await this.#instances()).filter(i => i.alive).map(i => i.id)
  }

  /**
   * The session of a resumable connection that is not in the store: it is still open on
   * another instance (`liveOn`: a half-open socket there), or its instance died. Of several
   * (an instance that has not yet noticed that the client resumed elsewhere), the newest
   * generation's. Taken out of a dead instance's presence, so it is resumed once.
   */
  async takeOrphan (clientId: string): Promise<Session | undefined> {
    const instances = await this.#instances()
    const answers = await perKey(this.#redis, instances.map(({ id }) => ['hget', this.#keys.presence(id), clientId]))
    let newest: { entry: Encoded, generation: number, id: string, alive: boolean } | undefined
    for (let i = 0; i < instances.length; i++) {
      const raw = answers[i] as string | null
      if (raw === null) continue
      const entry = JSON.parse(raw) as Encoded
      const generation = entry.g ?? 0
      if (newest === undefined || generation > newest.generation) newest = { entry, generation, ...instances[i] }
    }
    if (newest === undefined) return undefined
    const { entry, id, alive } = newest
    if (entry.m === undefined) return undefined
    // a dead instance's entry is taken out; the token it is resumed with is good once anyway
    if (!alive) await this.#redis.hdel(this.#keys.presence(id), clientId)
    const session: Session = { clientId, userId: entry.u, metadata: entry.m, rooms: entry.r, stream: id, connectedAt: entry.c!, expiresAt: Date.now() + this.#retention }
    if (entry.g !== undefined) session.generation = entry.g
    // a count written with the presence may be behind what the instance had processed
    if (entry.n !== undefined) {
      session.received = entry.n
      session.uncertain = true
    }
    if (alive) session.liveOn = id
    return session
  }

  async remoteConnections (): Promise<PresenceEntry[]> {
    const entries: PresenceEntry[] = []
    for (const id of await this.#others()) {
      const hash = await this.#redis.hgetall(this.#keys.presence(id))
      for (const [clientId, raw] of Object.entries(hash)) entries.push(decodeEntry(clientId, raw))
    }
    return entries
  }

  /**
   * The other instances with their connection counts; the last heartbeat of a live one is
   * told by what is left of its liveness key's expiry (each heartbeat sets it to the ttl).
   */
  async instances (): Promise<InstanceInfo[]> {
    const instances = await this.#instances()
    if (instances.length === 0) return []
    const answers = await perKey(this.#redis, instances.flatMap(({ id }) => [['pttl', this.#keys.instance(id)], ['hlen', this.#keys.presence(id)]]))
    const now = Date.now()
    return instances.map(({ id, alive }, i) => {
      const left = answers[2 * i] as number
      return { id, alive, connections: answers[2 * i + 1] as number, lastHeartbeat: alive ? now - (this.#ttl - left) : undefined }
    })
  }

  async remoteUserConnections (userId: string): Promise<number> {
    const others = await this.#others()
    if (others.length === 0) return 0
    let total = 0
    for (const count of await perKey(this.#redis, others.map(id => ['hget', this.#keys.users(id), userId]))) total += Number(count ?? 0)
    return total
  }

  /** The instances whose liveness key is there (an instance killed a moment ago is until its ttl ends). */
  async remoteInstances (): Promise<string[]> {
    return await this.#others()
  }

  /** A graceful close: this instance's presence goes at once. */
  async close (): Promise<void> {
    clearInterval(this.#timer)
    this.#arrived.clear()
    this.#redis.off('ready', this.#rewrite)
    this.#redis.off('-node', this.#nodeLost)
    clearTimeout(this.#healTimer)
    this.#healTimer = undefined
    if (this.#redis.status !== 'ready') return
    await Promise.all([
      this.#redis.del(this.#keys.presence(this.#id), this.#keys.instance(this.#id), this.#keys.users(this.#id)),
      this.#redis.srem(this.#keys.instances, this.#id)
    ]).catch(this.#onFailure)
  }

  #onFailure = (err: unknown): void => {
    this.failedWrites++
    this.#log?.debug({ err }, 'presence not written')
  }
}

interface Encoded { u?: string, r: string[], m?: Record<string, unknown>, c?: number, n?: number, g?: number }

function encodeEntry (conn: PresenceEntry): string {
  const entry: Encoded = { u: conn.userId, r: [...conn.rooms] }
  const session = conn.session
  if (session !== undefined) {
    entry.m = session.metadata
    entry.c = session.connectedAt
    if (session.generation > 0) entry.g = session.generation
    const upstream = session.upstream
    if (upstream !== undefined) entry.n = upstream.recorded = upstream.received
  }
  return JSON.stringify(entry)
}

function decodeEntry (clientId: string, raw: string): PresenceEntry {
  const { u, r } = JSON.parse(raw) as Encoded
  return { id: clientId, userId: u, rooms: r }
}
