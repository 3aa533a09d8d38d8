import { randomUUID } from 'node:crypto'
import { Redis, type RedisOptions } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'
import type { AdapterHealth, AdapterHost, ClusterMessage, PresenceEntry, WsAdapter } from './adapter.ts'
import { RedisPresence } from './redis-presence.ts'
import { decodeClusterMessage, encodeClusterMessage } from './cluster-codec.ts'
import { RedisResumeStore } from './redis-resume-store.ts'
import { checkRedisAdapterOptions, type RedisAdapterOptions } from './redis-options.ts'

export type { RedisAdapterOptions } from './redis-options.ts'
import type { ResumeStoreOptions } from './resume-store.ts'

/*
 * Many instances as one, through Redis. Every instance publishes what it sends to one
 * channel and subscribes to it on a connection of its own (ioredis subscribes again
 * after a reconnect); it delivers to its own clients itself and ignores its own echo.
 *
 * One channel rather than one per room or user: every instance must see every message
 * anyway, to keep its replay log complete for the clients that may resume on it. The
 * cost is that each instance reads every message once and drops those with no local
 * recipient (a map lookup).
 *
 * Local delivery never waits on Redis. While Redis is unreachable, publishes are kept in
 * a bounded queue (`maxQueue`) and sent in order when it is back; beyond the bound they
 * are dropped and counted. After an outage the host is told (`gap`): messages of the
 * other instances sent meanwhile were lost, as Redis pub/sub keeps nothing.
 */

export class RedisAdapter implements WsAdapter {
  readonly name = 'redis'
  readonly prefix: string
  readonly channel: string
  readonly client: Redis
  readonly subscriber: Redis
  #owned: Redis[]
  #maxQueue: number
  #host: AdapterHost | undefined = undefined
  #queue: Buffer[] = []
  /** Marks this adapter's messages, so that it can ignore its own echo (known before the start). */
  #origin = randomUUID()
  #dropped = 0
  #published = 0
  #received = 0
  #downSince = 0
  #gaps = 0
  #lastError: string | undefined = undefined
  #closed = false
  #log: FastifyBaseLogger | undefined = undefined
  readonly presence: RedisPresence

  /** Throws InvalidAdapterOptionsError naming the field when an option is unknown or does not fit. */
  constructor (input: RedisAdapterOptions = {}) {
    const options = checkRedisAdapterOptions(input)
    this.prefix = options.prefix ?? 'wss'
    this.channel = `${this.prefix}:msg`
    this.#maxQueue = options.maxQueue ?? 1000
    // commands fail at once while disconnected: the adapter queues (bounded) rather than ioredis (unbounded)
    const own: RedisOptions = { ...options.redisOptions, enableOfflineQueue: false, lazyConnect: true, enableAutoPipelining: true }
    if (options.client !== undefined) {
      this.client = options.client
      this.subscriber = options.subscriber ?? options.client.duplicate({ enableOfflineQueue: true, lazyConnect: true, maxRetriesPerRequest: null })
      this.#owned = options.closeClients === true ? [this.client, this.subscriber] : options.subscriber === undefined ? [this.subscriber] : []
    } else {
      const url = options.url ?? 'redis://127.0.0.1:6379'
      this.client = new Redis(url, own)
      this.subscriber = new Redis(url, { ...options.redisOptions, lazyConnect: true, maxRetriesPerRequest: null })
      this.#owned = [this.client, this.subscriber]
    }
    for (const redis of [this.client, this.subscriber]) {
      redis.on('error', this.#onError)
      redis.on('ready', this.#onReady)
      redis.on('close', this.#onClose)
    }
    this.subscriber.on('messageBuffer', this.#onMessage)
    this.presence = new RedisPresence(this.client, this.prefix, options.presenceTtl ?? 15_000)
  }

  /**
   * Connects and subscribes. When Redis cannot be reached the app starts all the same
   * (degraded: local delivery works) and the clients keep trying.
   */
  async start (host: AdapterHost): Promise<void> {
    this.#host = host
    this.#log = host.log
    this.presence.start(host)
    // queued on the subscriber until it is connected, however long that takes
    const subscribed = this.subscriber.subscribe(this.channel)
    try {
      for (const redis of [this.client, this.subscriber]) {
        if (redis.status === 'wait') await redis.connect()
      }
      await subscribed
      // a client you gave may still be connecting: its offline queue holds this until it is ready
      await this.client.ping()
      this.presence.rewrite()
      // what was published before the start
      this.#flush()
    } catch (err) {
      subscribed.catch(this.#onError)
      this.#downSince = Date.now()
      this.#error(err as Error)
      host.log.warn({ err }, 'redis unreachable at start: running on this instance alone until it is back')
    }
  }

  resumeStore (options: ResumeStoreOptions, log: FastifyBaseLogger): RedisResumeStore {
    this.presence.use(options.instanceId, options.retention)
    return new RedisResumeStore(this.client, this.prefix, options, log, this.presence)
  }

  publish (message: ClusterMessage): void {
    const data = encodeClusterMessage(this.#origin, message)
    if (this.client.status !== 'ready') {
      this.#enqueue(data)
      return
    }
    this.#send(data)
  }

  #send (data: Buffer): void {
    this.#published++
    this.client.publish(this.channel, data).catch((err: Error) => {
      // lost with the connection, or timed out: it may or may not have gone out, so it is
      // not sent again; it counts as dropped, reported now or when the connection is back
      this.#published--
      this.#dropped++
      this.#error(err)
      if (this.#downSince === 0) this.#reportGap(0)
    })
  }

  #enqueue (data: Buffer): void {
    if (this.#queue.length >= this.#maxQueue) {
      this.#dropped++
      return
    }
    this.#queue.push(data)
  }

  #onError = (err: Error): void => this.#error(err)
  #onReady = (): void => this.#ready()
  #onClose = (): void => this.#down()
  #onMessage = (_channel: Buffer, buffer: Buffer): void => this.#receive(buffer)

  #receive (buffer: Buffer): void {
    const decoded = decodeClusterMessage(buffer)
    if (decoded === undefined) {
      this.#log?.warn({ bytes: buffer.length }, 'not a cluster message: ignored')
      return
    }
    if (decoded.origin === this.#origin) return
    this.#received++
    this.#host?.deliver(decoded.message)
  }

  #down (): void {
    if (this.#downSince === 0 && !this.#closed) this.#downSince = Date.now()
  }

  /** Back after an outage once both connections are: send what was kept, report the gap. */
  #ready (): void {
    const since = this.#downSince
    if (since === 0 || this.client.status !== 'ready' || this.subscriber.status !== 'ready') return
    this.#downSince = 0
    this.#flush()
    this.presence.rewrite()
    this.#reportGap(Date.now() - since)
  }

  #flush (): void {
    const queue = this.#queue
    this.#queue = []
    for (const data of queue) this.#send(data)
  }

  #reportGap (downMs: number): void {
    const dropped = this.#dropped
    this.#dropped = 0
    this.#gaps++
    this.#host?.gap({ downMs, dropped })
  }

  #error (err: Error): void {
    this.#lastError = err.message
    this.#log?.debug({ err }, 'redis error')
  }

  connected (conn: PresenceEntry): void {
    this.presence.connected(conn)
  }

  roomsChanged (conn: PresenceEntry): void {
    this.presence.roomsChanged(conn)
  }

  disconnected (conn: PresenceEntry): void {
    this.presence.disconnected(conn)
  }

  async remoteConnections (): Promise<PresenceEntry[]> {
    return await this.presence.remoteConnections()
  }

  async remoteUserConnections (userId: string): Promise<number> {
    return await this.presence.remoteUserConnections(userId)
  }

  health (): AdapterHealth {
    return {
      status: this.client.status === 'ready' && this.subscriber.status === 'ready' ? 'up' : 'down',
      client: this.client.status,
      subscriber: this.subscriber.status,
      queued: this.#queue.length,
      dropped: this.#dropped,
      published: this.#published,
      received: this.#received,
      gaps: this.#gaps,
      lastError: this.#lastError
    }
  }

  async close (): Promise<void> {
    this.#closed = true
    this.#host = undefined
    await this.presence.close()
    // presence.close() waited for its last writes, which went after every other command
    for (const redis of this.#owned) redis.disconnect()
    // clients that stay open are left as they were given
    if (!this.#owned.includes(this.subscriber)) await this.subscriber.unsubscribe(this.channel).catch(this.#onError)
    for (const redis of [this.client, this.subscriber]) {
      if (this.#owned.includes(redis)) continue
      redis.off('error', this.#onError).off('ready', this.#onReady).off('close', this.#onClose)
    }
    this.subscriber.off('messageBuffer', this.#onMessage)
  }
}
