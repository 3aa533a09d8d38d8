import { randomUUID } from 'node:crypto'
import { Cluster, Redis } from 'ioredis'
import type { ClusterMessage } from './adapter.ts'
import { encodeClusterMessage } from './cluster-codec.ts'
import { checkRedisEmitterOptions, DEFAULT_PREFIX, DEFAULT_SHARDS, type RedisEmitterOptions } from './redis-options.ts'
import { messageChannel, shardChannels, type RedisClient } from './redis-keys.ts'
import { encode, type OutboundMessage } from '../outbound/encode.ts'
import { EmitFailedError, WebSocketStabilizerError } from '../errors.ts'
import type { BroadcastOptions, SendOptions } from '../manager.ts'

/*
 * Publishing from a process that has no sockets (a worker, a cron job, another service), as
 * Socket.IO's redis-emitter does: the message goes on the adapter's channel in the
 * adapter's format, stamped with an origin of the emitter's own, so every instance takes it
 * as another instance's message: it delivers it to its clients and logs it for replay.
 *
 * Replay ids: an instance logs another's message under the id the sender gave it
 * (`<log>:<offset>` of the sender's log), so that a resume that merges two instances' logs
 * (log-merge.ts) knows it once. The emitter has no log; its ids are `<origin>:<n>`, a
 * stream of its own that no instance's log is named after, the same on every instance.
 * Volatile messages have none and are logged nowhere.
 *
 * With `pubsub: 'sharded'` (the adapter's, with its `shards`) it publishes with SPUBLISH on
 * one shard's channel, chosen at random once, so that its messages keep their order.
 *
 * Nothing is acknowledged (Redis pub/sub says how many subscribers took a message, not
 * which sockets got it): a call resolves once Redis took the message, to the number of
 * instances listening on the channel, and rejects with EmitFailedError when Redis did not.
 */

const MAX_REASON_BYTES = 123

export class RedisEmitter {
  readonly prefix: string
  readonly pubsub: 'classic' | 'sharded'
  /** The channel it publishes on. */
  readonly channel: string
  readonly client: RedisClient
  /** Its messages' origin, and the stream their replay ids name. */
  readonly id = randomUUID()
  #owned: boolean
  #count = 0
  /** The messages published, numbered (the header's `s`: a repeat is dropped by the receivers, repeat-filter.ts). */
  #sent = 0
  #closed = false

  /**
   * Throws InvalidAdapterOptionsError naming the field when an option is unknown or does
   * not fit. With `url` (or nothing: `redis://127.0.0.1:6379`) it makes its client, with
   * ioredis' defaults: a publish made while Redis is unreachable waits in ioredis' offline
   * queue and goes out when Redis is back, or fails after `maxRetriesPerRequest` reconnect
   * attempts (20, about 10 s).
   */
  constructor (input: RedisEmitterOptions = {}) {
    const options = checkRedisEmitterOptions(input)
    this.prefix = options.prefix ?? DEFAULT_PREFIX
    this.pubsub = options.pubsub ?? 'classic'
    const channels = this.pubsub === 'sharded' ? shardChannels(this.prefix, options.shards ?? DEFAULT_SHARDS) : [messageChannel(this.prefix)]
    this.channel = channels[Math.floor(Math.random() * channels.length)]
    this.#owned = options.client === undefined
    this.client = options.client ?? (options.nodes !== undefined
      ? new Cluster(options.nodes, options.clusterOptions)
      : new Redis(options.url ?? 'redis://127.0.0.1:6379', options.redisOptions ?? {}))
    // its own client's errors reach the callers as rejections; without a listener ioredis would print them
    if (this.#owned) this.client.on('error', this.#onError)
  }

  /** Every connection, or the members of `room` (or of any of these rooms), except `exclude`, on every instance. */
  async broadcast (message: OutboundMessage, options: BroadcastOptions = {}): Promise<number> {
    const rooms = options.room === undefined ? undefined : typeof options.room === 'string' ? [options.room] : options.room
    if (rooms !== undefined) for (const room of rooms) checkName(room, 'a room name')
    let exclude: string[] | undefined
    if (options.exclude !== undefined) {
      exclude = typeof options.exclude === 'string' ? [options.exclude] : [...new Set(options.exclude)]
      for (const id of exclude) checkName(id, 'an excluded clientId')
    }
    return await this.#publish('a broadcast', { type: 'broadcast', rooms, exclude, ...this.#payload(message, options) })
  }

  /** Every connection of a user, on every instance. */
  async sendToUser (userId: string, message: OutboundMessage, options: SendOptions = {}): Promise<number> {
    checkName(userId, 'a userId')
    return await this.#publish('a message to a user', { type: 'user', userId, ...this.#payload(message, options) })
  }

  /** One client, on whichever instance has it (logged on all, so it gets it after a resume). */
  async send (clientId: string, message: OutboundMessage, options: SendOptions = {}): Promise<number> {
    checkName(clientId, 'a clientId')
    return await this.#publish('a message to a client', { type: 'client', clientId, ...this.#payload(message, options) })
  }

  /** Closes a client's connection with `code` (1000, or 3000-4999) and `reason`, on whichever instance has it. */
  async disconnect (clientId: string, code = 1000, reason = ''): Promise<number> {
    checkName(clientId, 'a clientId')
    if (!Number.isInteger(code) || (code !== 1000 && (code < 3000 || code > 4999))) {
      throw new WebSocketStabilizerError(`Expected a close code of 1000 or 3000-4999, got \`${String(code)}\``)
    }
    if (typeof reason !== 'string' || Buffer.byteLength(reason) > MAX_REASON_BYTES) {
      throw new WebSocketStabilizerError(`Expected a close reason to be a string of at most ${MAX_REASON_BYTES} bytes, got \`${String(reason)}\``)
    }
    return await this.#publish('a disconnect', { type: 'disconnect', clientId, code, reason })
  }

  /**
   * Refuses what comes after it. A client it made is closed once the publishes made before
   * went out (or failed); a client you gave is left as it is.
   */
  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    if (!this.#owned) return
    try {
      // never connected (`lazyConnect` and nothing published): nothing to wait for
      if (this.client.status === 'wait') this.client.disconnect()
      else await this.client.quit()
    } catch {
      // the publishes before it failed, and so did the quit queued behind them
      this.client.disconnect()
    }
    this.client.off('error', this.#onError)
  }

  /** Encoded once; non-volatile messages get the next id of the emitter's stream. */
  #payload (message: OutboundMessage, options: SendOptions): { data: Buffer, binary: boolean, json?: boolean, volatile?: boolean, id?: string } {
    const { data, binary, json } = encode(message)
    if (options.volatile === true) return { data, binary, json, volatile: true }
    return { data, binary, json, id: `${this.id}:${++this.#count}` }
  }

  async #publish (what: string, message: ClusterMessage): Promise<number> {
    if (this.#closed) throw new EmitFailedError(what, 'the emitter is closed')
    try {
      const data = encodeClusterMessage(this.id, message, ++this.#sent)
      return await (this.pubsub === 'sharded' ? this.client.spublish(this.channel, data) : this.client.publish(this.channel, data)) as number
    } catch (err) {
      throw new EmitFailedError(what, String(err), { cause: err })
    }
  }

  #onError = (): void => {}
}

function checkName (value: unknown, what: string): void {
  if (typeof value !== 'string' || value === '') throw new WebSocketStabilizerError(`Expected ${what} to be a non-empty string, got \`${String(value)}\``)
}
