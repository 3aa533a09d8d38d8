import { expect, test } from 'tstyche'
import { Cluster, Redis } from 'ioredis'
import { RedisAdapter, RedisEmitter, type RedisAdapterOptions, type RedisEmitterOptions } from '../lib/adapters/redis.ts'
import { EmitFailedError } from '../plugin.ts'

const emitter = new RedisEmitter({ url: 'redis://x', prefix: 'app' })

test('the emitter is made from a URL or your client', () => {
  expect(new RedisEmitter()).type.toBe<RedisEmitter>()
  expect(new RedisEmitter({ client: new Redis({ lazyConnect: true }) })).type.toBe<RedisEmitter>()
  expect(RedisEmitter).type.toBeConstructableWith({ url: 'redis://x', redisOptions: { connectTimeout: 1000 } })
  expect(RedisEmitter).type.not.toBeConstructableWith({ prefix: 1 })
  expect(RedisEmitter).type.not.toBeConstructableWith({ client: {} })
  expect(RedisEmitter).type.not.toBeConstructableWith({ maxQueue: 10 })
  expect<RedisEmitterOptions>().type.toBeAssignableFrom({ url: 'redis://x', prefix: 'p' })
  expect(emitter.client).type.toBe<Redis | Cluster>()
})

test('a Redis Cluster: your Cluster, or nodes, with classic or sharded pub/sub', () => {
  expect(new RedisEmitter({ client: new Cluster([{ port: 7000 }], { lazyConnect: true }), pubsub: 'sharded', shards: 8 })).type.toBe<RedisEmitter>()
  expect(RedisEmitter).type.toBeConstructableWith({ nodes: [{ host: 'h', port: 7000 }], clusterOptions: { redisOptions: { tls: {} } } })
  expect(RedisEmitter).type.not.toBeConstructableWith({ pubsub: 'fast' })
  expect(new RedisAdapter({ client: new Cluster([{ port: 7000 }], { lazyConnect: true }) })).type.toBe<RedisAdapter>()
  expect(RedisAdapter).type.toBeConstructableWith({ nodes: [{ host: 'h', port: 7000 }], pubsub: 'sharded', shards: 16 })
  expect(RedisAdapter).type.not.toBeConstructableWith({ nodes: [{ host: 'h', port: 7000 }], pubsub: 'fast' })
  expect<RedisAdapterOptions['pubsub']>().type.toBe<'classic' | 'sharded' | undefined>()
})

test('its calls take the manager\'s messages and options, and resolve to how many instances Redis handed them to', () => {
  expect(emitter.broadcast({ a: 1 }, { room: ['a', 'b'], exclude: new Set(['c']), volatile: true })).type.toBe<Promise<number>>()
  expect(emitter.broadcast(Buffer.from('x'))).type.toBe<Promise<number>>()
  expect(emitter.sendToUser('u', 'text', { volatile: true })).type.toBe<Promise<number>>()
  expect(emitter.send('c', new Uint8Array(1))).type.toBe<Promise<number>>()
  expect(emitter.disconnect('c', 4000, 'bye')).type.toBe<Promise<number>>()
  expect(emitter.close()).type.toBe<Promise<void>>()
  expect(emitter.broadcast).type.not.toBeCallableWith('x', { rooms: 'a' })
  expect(emitter.send).type.not.toBeCallableWith('c', undefined)
  expect(emitter.disconnect).type.not.toBeCallableWith('c', '4000')
})

test('EmitFailedError is exported with the other errors', () => {
  expect(new EmitFailedError('a broadcast', 'down').code).type.toBe<'FST_WS_EMIT_FAILED'>()
})
