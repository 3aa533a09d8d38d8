import { Cluster, Redis, type RedisOptions } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'
import { ClusterAdapter } from './cluster-adapter.ts'
import { RedisPresence } from './redis-presence.ts'
import { RedisResumeStore } from './redis-resume-store.ts'
import { checkRedisAdapterOptions, DEFAULT_PREFIX, DEFAULT_SHARDS, type RedisAdapterOptions } from './redis-options.ts'
import { isCluster, messageChannel, RedisKeys, shardChannels, type RedisClient } from './redis-keys.ts'

export type { RedisAdapterOptions, RedisEmitterOptions } from './redis-options.ts'
export { RedisEmitter } from './redis-emitter.ts'
import type { ResumeStoreOptions } from './resume-store.ts'

/*
 * Many instances as one, through Redis: the transport of a ClusterAdapter (which stamps,
 * queues, ignores the echo and counts gaps), with its presence (redis-presence.ts) and
 * resume store (redis-resume-store.ts) on the same commands connection. Every instance
 * publishes what it sends to one channel and subscribes to it on a connection of its own
 * (ioredis subscribes again after a reconnect).
 *
 * On a Redis Cluster (an ioredis `Cluster`, yours or made from `nodes`), classic pub/sub
 * goes through the cluster bus to every node; `pubsub: 'sharded'` (Redis 7+) spreads the
 * messages over `shards` channels in as many slots: an instance publishes on one of them
 * (chosen at random once, so that its messages keep their order) and subscribes to all
 * (SSUBSCRIBE, through ioredis' `shardedSubscribers`: a connection per master). A node
 * lost (a failover) counts as an outage: the host hears of the gap once the cluster's
 * slots were refreshed.
 *
 * One channel (per shard) rather than one per room or user: every instance must see every message
 * anyway, to keep its replay log complete for the clients that may resume on it. The
 * cost is that each instance reads every message once and drops those with no local
 * recipient (a map lookup).
 *
 * Local delivery never waits on Redis. While Redis is unreachable, publishes are kept in
 * the base's bounded queue (`maxQueue`); after an outage the host is told (`gap`):
 * messages of the other instances sent meanwhile were lost, as Redis pub/sub keeps nothing.
 */

export class RedisAdapter extends ClusterAdapter {
  readonly name = 'redis'
  readonly prefix: string
  readonly keys: RedisKeys
  readonly pubsub: 'classic' | 'sharded'
  /** The channels it subscribes to: one (classic), or one per shard. */
  readonly channels: string[]
  /** The channel it publishes on. */
  readonly channel: string
  readonly client: RedisClient
  readonly subscriber: RedisClient
  readonly presence: RedisPresence
  #owned: RedisClient[]

  /** Throws InvalidAdapterOptionsError naming the field when an option is unknown or does not fit. */
  constructor (input: RedisAdapterOptions = {}) {
    const options = checkRedisAdapterOptions(input)
    super({ maxQueue: options.maxQueue ?? 1000 })
    this.prefix = options.prefix ?? DEFAULT_PREFIX
    this.keys = new RedisKeys(this.prefix)
    this.pubsub = options.pubsub ?? 'classic'
    const sharded = this.pubsub === 'sharded'
    this.channels = sharded ? shardChannels(this.prefix, options.shards ?? DEFAULT_SHARDS) : [messageChannel(this.prefix)]
    this.channel = this.channels[Math.floor(Math.random() * this.channels.length)]
    // commands fail at once while disconnected: the adapter queues (bounded) rather than ioredis (unbounded)
    const own: RedisOptions = { ...options.redisOptions, enableOfflineQueue: false, lazyConnect: true, enableAutoPipelining: true }
    if (options.client !== undefined) {
      const client = options.client
      this.client = client
      this.subscriber = options.subscriber ?? (isCluster(client)
        ? client.duplicate(undefined, { enableOfflineQueue: true, lazyConnect: true, shardedSubscribers: sharded })
        : client.duplicate({ enableOfflineQueue: true, lazyConnect: true, maxRetriesPerRequest: null }))
      this.#owned = options.closeClients === true ? [this.client, this.subscriber] : options.subscriber === undefined ? [this.subscriber] : []
    } else if (options.nodes !== undefined) {
      const cluster = options.clusterOptions ?? {}
      this.client = new Cluster(options.nodes, { ...cluster, enableOfflineQueue: false, lazyConnect: true, enableAutoPipelining: true })
      this.subscriber = new Cluster(options.nodes, { ...cluster, lazyConnect: true, shardedSubscribers: sharded, redisOptions: { ...cluster.redisOptions, commandTimeout: undefined } })
      this.#owned = [this.client, this.subscriber]
    } else {
      const url = options.url ?? 'redis://127.0.0.1:6379'
      this.client = new Redis(url, own)
      // no commandTimeout on the subscriber: a SUBSCRIBE that timed out still completes, and
      // must not fail a start that is merely slow
      this.subscriber = new Redis(url, { ...options.redisOptions, commandTimeout: undefined, lazyConnect: true, maxRetriesPerRequest: null })
      this.#owned = [this.client, this.subscriber]
    }
    for (const redis of [this.client, this.subscriber]) {
      redis.on('error', this.#onError)
      redis.on('ready', this.#onReady)
      redis.on('close', this.#onClose)
      // a Cluster stays `ready` while one of its nodes is lost: that node's slots are an outage until they are served again
      redis.on('node error', this.#onNodeLost)
      redis.on('refresh', this.#onReady)
      redis.on('subscribersReady', this.#onReady)
    }
    this.subscriber.on(sharded ? 'smessageBuffer' : 'messageBuffer', this.#onMessage)
    this.presence = new RedisPresence(this.client, this.keys, options.presenceTtl ?? 15_000)
  }

  protected async doStart (): Promise<void> {
    // queued on the subscriber until it is connected, however long that takes
    const subscribed = this.#subscribe()
    // handled at once (it is awaited only after the connects): a rejection meanwhile is reported, not unhandled
    subscribed.catch(this.#onError)
    for (const redis of [this.client, this.subscriber]) {
      if (redis.status === 'wait') await redis.connect()
    }
    await subscribed
    // a client you gave may still be connecting: its offline queue holds this until it is ready
    await this.client.ping()
    // a Cluster connects to each master on its first command there: all of them now, so
    // that the first writes of the presence are not the slow ones
    if (isCluster(this.client)) await Promise.all(this.client.nodes('master').map(async node => await node.ping()))
  }

  /** SUBSCRIBE to the one channel, or SSUBSCRIBE to each shard's (one slot each: one command each). */
  async #subscribe (): Promise<unknown> {
    if (this.pubsub === 'classic') return await this.subscriber.subscribe(this.channel)
    return await Promise.all(this.channels.map(async channel => await this.subscriber.ssubscribe(channel)))
  }

  resumeStore (options: ResumeStoreOptions, log: FastifyBaseLogger): RedisResumeStore {
    return new RedisResumeStore(this.client, this.keys, options, log, this.presence)
  }

  protected async doPublish (data: Buffer): Promise<unknown> {
    if (this.pubsub === 'sharded') return await this.client.spublish(this.channel, data)
    return await this.client.publish(this.channel, data)
  }

  protected canPublish (): boolean {
    return this.client.status === 'ready'
  }

  protected isUp (): boolean {
    return this.client.status === 'ready' && this.subscriber.status === 'ready'
  }

  protected details (): Record<string, unknown> {
    return { client: this.client.status, subscriber: this.subscriber.status }
  }

  #onError = (err: Error): void => this.error(err)
  /** Back once both connections are. */
  #onReady = (): void => { if (this.isUp()) this.linkUp() }
  #onClose = (): void => this.linkDown()
  #onNodeLost = (): void => this.linkDown()
  #onMessage = (_channel: Buffer, buffer: Buffer): void => this.receive(buffer)

  /** After the presence closed: its last writes went after every other command. */
  protected async doClose (): Promise<void> {
    for (const redis of this.#owned) redis.disconnect()
    // clients that stay open are left as they were given
    if (!this.#owned.includes(this.subscriber)) {
      const unsubscribed = this.pubsub === 'classic'
        ? this.subscriber.unsubscribe(this.channel)
        : Promise.all(this.channels.map(async channel => await this.subscriber.sunsubscribe(channel)))
      await unsubscribed.catch(this.#onError)
    }
    for (const redis of [this.client, this.subscriber]) {
      if (this.#owned.includes(redis)) continue
      redis.off('error', this.#onError).off('ready', this.#onReady).off('close', this.#onClose)
        .off('node error', this.#onNodeLost).off('refresh', this.#onReady).off('subscribersReady', this.#onReady)
    }
    this.subscriber.off(this.pubsub === 'sharded' ? 'smessageBuffer' : 'messageBuffer', this.#onMessage)
  }
}
