import { Type } from '@sinclair/typebox'
import type { ClusterOptions, RedisOptions } from 'ioredis'
import { InvalidAdapterOptionsError } from '../errors.ts'
import { check, show } from '../options.ts'
import { isCluster, type RedisClient } from './redis-keys.ts'

export { messageChannel } from './redis-keys.ts'

/*
 * RedisAdapter's and RedisEmitter's options: TypeBox schemas with a doc comment per field,
 * checked once in the constructor like the plugin's own (an unknown field, `urll`, is an
 * error naming it). The clients are checked beside the schema.
 */

/** The prefix of every channel and key when none is given. */
export const DEFAULT_PREFIX = 'wss'

/** Shards of sharded pub/sub when none is given. */
export const DEFAULT_SHARDS = 16

const Prefix = Type.String({ minLength: 1, pattern: '^[^{}]+$', expected: 'a non-empty string without braces (they would make a hash tag of it)' })
const Nodes = Type.Array(Type.Object({ host: Type.Optional(Type.String()), port: Type.Optional(Type.Integer()) }, { additionalProperties: true }), { minItems: 1, expected: 'a non-empty list of Redis Cluster nodes such as { host, port }' })
const ClusterOptionsField = Type.Object({}, { additionalProperties: true, expected: 'an object of ioredis Cluster options' })
const PubSub = Type.Union([Type.Literal('classic'), Type.Literal('sharded')], { expected: '`classic` or `sharded`' })
const Shards = Type.Integer({ minimum: 1, maximum: 1024, expected: 'an integer from 1 to 1024' })

export const RedisAdapterOptionsSchema = Type.Object({
  /** A Redis URL (`redis://host:port/db`): the adapter makes its clients and closes them. */
  url: Type.Optional(Type.String({ minLength: 1, expected: 'a Redis URL such as redis://host:6379/0' })),
  /** ioredis options for the clients the adapter makes. */
  redisOptions: Type.Optional(Type.Object({}, { additionalProperties: true, expected: 'an object of ioredis options' })),
  /** Redis Cluster nodes to start from (instead of `url`): the adapter makes ioredis `Cluster` clients and closes them. */
  nodes: Type.Optional(Nodes),
  /** ioredis `Cluster` options for the clients made from `nodes` (TLS and auth in `redisOptions` within). */
  clusterOptions: Type.Optional(ClusterOptionsField),
  /** `classic` (PUBLISH/SUBSCRIBE, one channel, the default) or `sharded` (SPUBLISH/SSUBSCRIBE over `shards` channels, Redis 7+). */
  pubsub: Type.Optional(PubSub),
  /** Channels of sharded pub/sub, spread over the slots (default 16); the emitters must use the same. */
  shards: Type.Optional(Shards),
  /** Your ioredis client (a `Redis` or a `Cluster`), for commands and publishing; left open on close unless `closeClients`. */
  client: Type.Optional(Type.Unknown()),
  /** Your ioredis client for subscribing (a dedicated connection); default: a duplicate of `client`. */
  subscriber: Type.Optional(Type.Unknown()),
  /** Close the clients you gave on `fastify.close()` (default false). */
  closeClients: Type.Optional(Type.Boolean({ expected: 'a boolean' })),
  /** Prefix of every channel and key, so environments sharing a Redis never cross-talk (default `wss`). */
  prefix: Type.Optional(Prefix),
  /** Publishes kept while Redis is unreachable; beyond it they are dropped and counted (default 1000). */
  maxQueue: Type.Optional(Type.Integer({ minimum: 0, expected: 'a non-negative integer' })),
  /**
   * How long an instance's presence outlives its last heartbeat, in ms (default 15 s; the
   * heartbeat runs every third of it). An instance that dies without a shutdown drops out
   * of the cluster-wide counts after this long.
   */
  presenceTtl: Type.Optional(Type.Integer({ minimum: 1, expected: 'a positive integer number of milliseconds' }))
}, { additionalProperties: false, expected: 'an object' })

export interface RedisAdapterOptions {
  /** A Redis URL (`redis://host:port/db`): the adapter makes its clients and closes them. */
  url?: string
  /** ioredis options for the clients the adapter makes. */
  redisOptions?: RedisOptions
  /** Redis Cluster nodes to start from (instead of `url`): the adapter makes ioredis `Cluster` clients and closes them. */
  nodes?: Array<{ host?: string, port?: number }>
  /** ioredis `Cluster` options for the clients made from `nodes` (TLS and auth in `redisOptions` within). */
  clusterOptions?: ClusterOptions
  /** `classic` (PUBLISH/SUBSCRIBE, one channel, the default) or `sharded` (SPUBLISH/SSUBSCRIBE over `shards` channels, Redis 7+). */
  pubsub?: 'classic' | 'sharded'
  /** Channels of sharded pub/sub, spread over the slots (default 16); the emitters must use the same. */
  shards?: number
  /** Your ioredis client (a `Redis` or a `Cluster`), for commands and publishing; left open on close unless `closeClients`. */
  client?: RedisClient
  /**
   * Your ioredis client for subscribing (a dedicated connection); default: a duplicate of
   * `client`. With `pubsub: 'sharded'` on a Cluster, one made with `shardedSubscribers: true`.
   */
  subscriber?: RedisClient
  /** Close the clients you gave on `fastify.close()` (default false). */
  closeClients?: boolean
  /** Prefix of every channel and key, so environments sharing a Redis never cross-talk (default `wss`). */
  prefix?: string
  /** Publishes kept while Redis is unreachable; beyond it they are dropped and counted (default 1000). */
  maxQueue?: number
  /**
   * How long an instance's presence outlives its last heartbeat, in ms (default 15 s; the
   * heartbeat runs every third of it). An instance that dies without a shutdown drops out
   * of the cluster-wide counts after this long.
   */
  presenceTtl?: number
}

/** Throws InvalidAdapterOptionsError naming the field, or returns the options as given. */
export function checkRedisAdapterOptions (options: unknown): RedisAdapterOptions {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) fail(`Expected \`options\` to be an object, got \`${show(options)}\``)
  const result = check(RedisAdapterOptionsSchema, options, '', false)
  if (result.problem !== undefined) fail(result.problem)
  const { client, subscriber, pubsub } = options as RedisAdapterOptions
  checkClient(client, 'client', fail)
  checkClient(subscriber, 'subscriber', fail)
  checkSources(options as RedisAdapterOptions, fail)
  if (pubsub === 'sharded' && subscriber !== undefined && isCluster(subscriber) && subscriber.options.shardedSubscribers !== true) {
    fail('Expected `subscriber` to be a Cluster made with `shardedSubscribers: true` for `pubsub: \'sharded\'`, got one without')
  }
  return options as RedisAdapterOptions
}

export const RedisEmitterOptionsSchema = Type.Object({
  /** A Redis URL (`redis://host:port/db`): the emitter makes its client and closes it in `close()`. */
  url: Type.Optional(Type.String({ minLength: 1, expected: 'a Redis URL such as redis://host:6379/0' })),
  /** ioredis options for the client the emitter makes. */
  redisOptions: Type.Optional(Type.Object({}, { additionalProperties: true, expected: 'an object of ioredis options' })),
  /** Redis Cluster nodes to start from (instead of `url`): the emitter makes an ioredis `Cluster` and closes it in `close()`. */
  nodes: Type.Optional(Nodes),
  /** ioredis `Cluster` options for the client made from `nodes`. */
  clusterOptions: Type.Optional(ClusterOptionsField),
  /** The adapter's `pubsub` (default `classic`). */
  pubsub: Type.Optional(PubSub),
  /** The adapter's `shards` (default 16). */
  shards: Type.Optional(Shards),
  /** Your ioredis client (a `Redis` or a `Cluster`) instead of `url`: the emitter publishes on it and never closes it. */
  client: Type.Optional(Type.Unknown()),
  /** The adapter's `prefix` (default `wss`): the emitter publishes on its channel. */
  prefix: Type.Optional(Prefix)
}, { additionalProperties: false, expected: 'an object' })

export interface RedisEmitterOptions {
  /** A Redis URL (`redis://host:port/db`): the emitter makes its client and closes it in `close()`. */
  url?: string
  /** ioredis options for the client the emitter makes. */
  redisOptions?: RedisOptions
  /** Redis Cluster nodes to start from (instead of `url`): the emitter makes an ioredis `Cluster` and closes it in `close()`. */
  nodes?: Array<{ host?: string, port?: number }>
  /** ioredis `Cluster` options for the client made from `nodes`. */
  clusterOptions?: ClusterOptions
  /** The adapter's `pubsub` (default `classic`). */
  pubsub?: 'classic' | 'sharded'
  /** The adapter's `shards` (default 16). */
  shards?: number
  /** Your ioredis client (a `Redis` or a `Cluster`) instead of `url`: the emitter publishes on it and never closes it. */
  client?: RedisClient
  /** The adapter's `prefix` (default `wss`): the emitter publishes on its channel. */
  prefix?: string
}

/** Throws InvalidAdapterOptionsError naming the field, or returns the options as given. */
export function checkRedisEmitterOptions (options: unknown): RedisEmitterOptions {
  const fail = (problem: string): never => { throw new InvalidAdapterOptionsError('RedisEmitter', problem) }
  if (typeof options !== 'object' || options === null || Array.isArray(options)) fail(`Expected \`options\` to be an object, got \`${show(options)}\``)
  const result = check(RedisEmitterOptionsSchema, options, '', false)
  if (result.problem !== undefined) fail(result.problem)
  const { client, url, redisOptions } = options as RedisEmitterOptions
  checkClient(client, 'client', fail)
  if (client !== undefined && (url !== undefined || redisOptions !== undefined)) {
    fail('Expected either `client` or `url` (with `redisOptions`), got both: the options of your client are your client\'s')
  }
  checkSources(options as RedisEmitterOptions, fail)
  return options as RedisEmitterOptions
}

/** `nodes` (with `clusterOptions`) is a source of its own, as `url` (with `redisOptions`) and `client` are. */
function checkSources (options: { nodes?: unknown, clusterOptions?: unknown, url?: string, redisOptions?: unknown, client?: unknown }, fail: (problem: string) => never): void {
  if (options.nodes !== undefined) {
    for (const other of ['url', 'redisOptions', 'client'] as const) {
      if (options[other] !== undefined) fail(`Expected either \`nodes\` (with \`clusterOptions\`) or \`${other}\`, got both${other === 'redisOptions' ? ': the nodes\' options go in `clusterOptions.redisOptions`' : ''}`)
    }
  } else if (options.clusterOptions !== undefined) {
    fail('Expected `clusterOptions` only with `nodes`, got it without')
  }
}

function checkClient (value: unknown, name: string, fail: (problem: string) => never): void {
  if (value === undefined) return
  const redis = value as Partial<RedisClient> | null
  if (typeof redis?.duplicate !== 'function' || typeof redis.publish !== 'function' || typeof redis.subscribe !== 'function') {
    fail(`Expected \`${name}\` to be an ioredis client, got \`${show(value)}\``)
  }
}

function fail (problem: string): never {
  throw new InvalidAdapterOptionsError('RedisAdapter', problem)
}
