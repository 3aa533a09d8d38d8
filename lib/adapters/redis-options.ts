import { Type } from '@sinclair/typebox'
import type { Redis, RedisOptions } from 'ioredis'
import { InvalidAdapterOptionsError } from '../errors.ts'
import { check, show } from '../options.ts'

/*
 * RedisAdapter's and RedisEmitter's options: TypeBox schemas with a doc comment per field,
 * checked once in the constructor like the plugin's own (an unknown field, `urll`, is an
 * error naming it). The clients are checked beside the schema.
 */

/** The prefix of every channel and key when none is given. */
export const DEFAULT_PREFIX = 'wss'

/** The one channel every instance publishes its messages on and subscribes to. */
export function messageChannel (prefix: string): string {
  return `${prefix}:msg`
}

export const RedisAdapterOptionsSchema = Type.Object({
  /** A Redis URL (`redis://host:port/db`): the adapter makes its clients and closes them. */
  url: Type.Optional(Type.String({ minLength: 1, expected: 'a Redis URL such as redis://host:6379/0' })),
  /** ioredis options for the clients the adapter makes. */
  redisOptions: Type.Optional(Type.Object({}, { additionalProperties: true, expected: 'an object of ioredis options' })),
  /** Your ioredis client, for commands and publishing; left open on close unless `closeClients`. */
  client: Type.Optional(Type.Unknown()),
  /** Your ioredis client for subscribing (a dedicated connection); default: a duplicate of `client`. */
  subscriber: Type.Optional(Type.Unknown()),
  /** Close the clients you gave on `fastify.close()` (default false). */
  closeClients: Type.Optional(Type.Boolean({ expected: 'a boolean' })),
  /** Prefix of every channel and key, so environments sharing a Redis never cross-talk (default `wss`). */
  prefix: Type.Optional(Type.String({ minLength: 1, expected: 'a non-empty string' })),
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
  /** Your ioredis client, for commands and publishing; left open on close unless `closeClients`. */
  client?: Redis
  /** Your ioredis client for subscribing (a dedicated connection); default: a duplicate of `client`. */
  subscriber?: Redis
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
  const { client, subscriber } = options as RedisAdapterOptions
  checkClient(client, 'client', fail)
  checkClient(subscriber, 'subscriber', fail)
  return options as RedisAdapterOptions
}

export const RedisEmitterOptionsSchema = Type.Object({
  /** A Redis URL (`redis://host:port/db`): the emitter makes its client and closes it in `close()`. */
  url: Type.Optional(Type.String({ minLength: 1, expected: 'a Redis URL such as redis://host:6379/0' })),
  /** ioredis options for the client the emitter makes. */
  redisOptions: Type.Optional(Type.Object({}, { additionalProperties: true, expected: 'an object of ioredis options' })),
  /** Your ioredis client instead of `url`: the emitter publishes on it and never closes it. */
  client: Type.Optional(Type.Unknown()),
  /** The adapter's `prefix` (default `wss`): the emitter publishes on its channel. */
  prefix: Type.Optional(Type.String({ minLength: 1, expected: 'a non-empty string' }))
}, { additionalProperties: false, expected: 'an object' })

export interface RedisEmitterOptions {
  /** A Redis URL (`redis://host:port/db`): the emitter makes its client and closes it in `close()`. */
  url?: string
  /** ioredis options for the client the emitter makes. */
  redisOptions?: RedisOptions
  /** Your ioredis client instead of `url`: the emitter publishes on it and never closes it. */
  client?: Redis
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
  return options as RedisEmitterOptions
}

function checkClient (value: unknown, name: string, fail: (problem: string) => never): void {
  if (value === undefined) return
  const redis = value as Partial<Redis> | null
  if (typeof redis?.duplicate !== 'function' || typeof redis.publish !== 'function' || typeof redis.subscribe !== 'function') {
    fail(`Expected \`${name}\` to be an ioredis client, got \`${show(value)}\``)
  }
}

function fail (problem: string): never {
  throw new InvalidAdapterOptionsError('RedisAdapter', problem)
}
