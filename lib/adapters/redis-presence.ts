import type { Redis } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'
import type { AdapterHost, PresenceEntry } from './adapter.ts'
import type { Session } from '../sessions.ts'

/*
 * Which connections live on which instance, in Redis:
 * - `<prefix>:instance:<id>`: the instance is alive; expires `ttl` ms after its last heartbeat;
 * - `<prefix>:instances`: the set of instance ids (the dead are pruned by whoever notices);
 * - `<prefix>:presence:<id>`: hash clientId → `{"u":userId,"r":[rooms]}` (plus metadata and
 *   connection time for resumable connections), kept `retention` ms longer than the
 *   instance's own key, so that the clients of an instance that died can resume elsewhere;
 * - `<prefix>:user:<userId>`: hash instanceId → that user's connection count there.
 * An instance that dies without a shutdown drops out when its keys expire; a graceful
 * close removes them at once. Writes never wait; after an outage (or a Redis that came
 * back empty) the instance writes its whole presence again.
 */
export class RedisPresence {
  #redis: Redis
  #prefix: string
  #ttl: number
  /** How long the presence of a dead instance is kept for resumes (`reconnect.maxDisconnect`). */
  retention = 0
  #host: AdapterHost | undefined = undefined
  #log: FastifyBaseLogger | undefined = undefined
  #timer: NodeJS.Timeout | undefined = undefined
  /** Users this instance has written a count for, to clear them on a rewrite. */
  #users = new Set<string>()
  failedWrites = 0

  constructor (redis: Redis, prefix: string, ttl: number) {
    this.#redis = redis
    this.#prefix = prefix
    this.#ttl = ttl
  }

  get #id (): string {
    return this.#host!.instanceId
  }

  /** Writes this instance's presence and refreshes it every third of the ttl. */
  start (host: AdapterHost): void {
    this.#host = host
    this.#log = host.log
    this.#timer = setInterval(() => { this.#beat() }, Math.max(10, Math.floor(this.#ttl / 3))).unref()
  }

  /** Writes everything again: at start, and after Redis was away (it may have lost it all). */
  rewrite (): void {
    const host = this.#host
    if (host === undefined) return
    const presence = this.#key('presence', this.#id)
    const multi = this.#redis.multi().del(presence)
    const users = new Map<string, number>()
    for (const conn of host.connections()) {
      multi.hset(presence, conn.id, encodeEntry(conn))
      if (conn.userId !== undefined) users.set(conn.userId, (users.get(conn.userId) ?? 0) + 1)
    }
    for (const user of this.#users) if (!users.has(user)) multi.hdel(this.#key('user', user), this.#id)
    this.#users = new Set(users.keys())
    for (const [user, count] of users) multi.hset(this.#key('user', user), this.#id, count)
    multi.pexpire(presence, this.#ttl + this.retention)
    multi.set(this.#key('instance', this.#id), '1', 'PX', this.#ttl).sadd(`${this.#prefix}:instances`, this.#id)
    multi.exec().catch(err => this.#failed(err))
  }

  #beat (): void {
    this.#redis.multi()
      .set(this.#key('instance', this.#id), '1', 'PX', this.#ttl)
      .pexpire(this.#key('presence', this.#id), this.#ttl + this.retention)
      .exec().catch(err => this.#failed(err))
  }

  connected (conn: PresenceEntry): void {
    if (this.#host === undefined) return
    this.#redis.hset(this.#key('presence', this.#id), conn.id, encodeEntry(conn)).catch(err => this.#failed(err))
    if (conn.userId === undefined) return
    this.#users.add(conn.userId)
    this.#redis.hincrby(this.#key('user', conn.userId), this.#id, 1).catch(err => this.#failed(err))
  }

  roomsChanged (conn: PresenceEntry): void {
    if (this.#host === undefined) return
    this.#redis.hset(this.#key('presence', this.#id), conn.id, encodeEntry(conn)).catch(err => this.#failed(err))
  }

  disconnected (conn: PresenceEntry): void {
    if (this.#host === undefined) return
    this.#redis.hdel(this.#key('presence', this.#id), conn.id).catch(err => this.#failed(err))
    if (conn.userId === undefined) return
    this.#redis.hincrby(this.#key('user', conn.userId), this.#id, -1).catch(err => this.#failed(err))
  }

  /**
   * The other instances, live or dead; the set is pruned of those whose presence is gone too.
   */
  async #instances (): Promise<Array<{ id: string, alive: boolean }>> {
    const ids = (await this.#redis.smembers(`${this.#prefix}:instances`)).filter(id => id !== this.#id)
    if (ids.length === 0) return []
    const pipeline = this.#redis.pipeline()
    for (const id of ids) pipeline.exists(this.#key('instance', id)).exists(this.#key('presence', id))
    const answers = await pipeline.exec()
    const found: Array<{ id: string, alive: boolean }> = []
    const gone: string[] = []
    ids.forEach((id, i) => {
      const alive = answers![2 * i][1] === 1
      if (alive || answers![2 * i + 1][1] === 1) found.push({ id, alive })
      else gone.push(id)
    })
    if (gone.length > 0) this.#redis.srem(`${this.#prefix}:instances`, ...gone).catch(err => this.#failed(err))
    return found
  }

  async #others (): Promise<string[]> {
    return (await this.#instances()).filter(i => i.alive).map(i => i.id)
  }

  /**
   * The session of a resumable connection that is not in the store: it is still open on
   * another instance (`liveOn`: a half-open socket there), or its instance died. Taken
   * out of a dead instance's presence, so it is resumed once.
   */
  async takeOrphan (clientId: string): Promise<Session | undefined> {
    const instances = await this.#instances()
    if (instances.length === 0) return undefined
    const pipeline = this.#redis.pipeline()
    for (const { id } of instances) pipeline.hget(this.#key('presence', id), clientId)
    const answers = await pipeline.exec()
    for (let i = 0; i < instances.length; i++) {
      const raw = answers![i][1] as string | null
      if (raw === null) continue
      const { id, alive } = instances[i]
      const entry = JSON.parse(raw) as Encoded
      if (entry.m === undefined) return undefined
      if (!alive && await this.#redis.hdel(this.#key('presence', id), clientId) === 0) return undefined
      const session: Session = { clientId, userId: entry.u, metadata: entry.m, rooms: entry.r, stream: id, connectedAt: entry.c!, expiresAt: Date.now() + this.retention }
      if (alive) session.liveOn = id
      return session
    }
    return undefined
  }

  async remoteConnections (): Promise<PresenceEntry[]> {
    const entries: PresenceEntry[] = []
    for (const id of await this.#others()) {
      const hash = await this.#redis.hgetall(this.#key('presence', id))
      for (const [clientId, raw] of Object.entries(hash)) entries.push(decodeEntry(clientId, raw))
    }
    return entries
  }

  async remoteUserConnections (userId: string): Promise<number> {
    const counts = await this.#redis.hgetall(this.#key('user', userId))
    const live = new Set(await this.#others())
    let total = 0
    for (const [id, count] of Object.entries(counts)) {
      if (live.has(id)) total += Number(count)
    }
    return total
  }

  /** A graceful close: this instance's presence goes at once. */
  async close (): Promise<void> {
    clearInterval(this.#timer)
    const host = this.#host
    this.#host = undefined
    if (host === undefined || this.#redis.status !== 'ready') return
    const multi = this.#redis.multi()
      .del(this.#key('presence', host.instanceId), this.#key('instance', host.instanceId))
      .srem(`${this.#prefix}:instances`, host.instanceId)
    for (const user of this.#users) multi.hdel(this.#key('user', user), host.instanceId)
    await multi.exec().catch(err => this.#failed(err))
  }

  #key (kind: string, name: string): string {
    return `${this.#prefix}:${kind}:${name}`
  }

  #failed (err: unknown): void {
    this.failedWrites++
    this.#log?.debug({ err }, 'presence not written')
  }
}

interface Encoded { u?: string, r: string[], m?: Record<string, unknown>, c?: number }

function encodeEntry (conn: PresenceEntry): string {
  const entry: Encoded = { u: conn.userId, r: [...conn.rooms] }
  const session = conn.session
  if (session !== undefined) {
    entry.m = session.metadata
    entry.c = session.connectedAt
  }
  return JSON.stringify(entry)
}

function decodeEntry (clientId: string, raw: string): PresenceEntry {
  const { u, r } = JSON.parse(raw) as Encoded
  return { id: clientId, userId: u, rooms: r }
}
