import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { RedisAdapter } from '../lib/adapters/redis.ts'
import type { GapInfo } from '../plugin.ts'
import { buildApp, connect, until } from './helpers.ts'
import { redisAvailable, startRedis, type RedisServer } from './redis-server.ts'

const skip = !redisAvailable() && 'redis-server is not installed'

async function instance (t: Parameters<typeof buildApp>[0], redis: RedisServer, maxQueue = 1000, retry = 20): Promise<FastifyInstance> {
  const adapter = new RedisAdapter({ url: redis.url, prefix: 'outage', maxQueue, redisOptions: { retryStrategy: () => retry } })
  return await buildApp(t, { adapter }, app => {
    app.get('/ws', { websocket: true, config: { ws: { identify: r => ({ userId: (r.query as { user?: string }).user }) } } }, () => {})
  })
}

test('Redis stopped and restarted during traffic: no crash, local delivery goes on, the queue is bounded, delivery resumes, the gap is reported', { skip }, async (t) => {
  const redis = await startRedis(t)
  // A comes back later than B, so that B listens again when A sends what it kept
  const a = await instance(t, redis, 5, 200)
  const b = await instance(t, redis)
  const gaps: GapInfo[] = []
  a.wsManager.on('gap', info => gaps.push(info))
  b.wsManager.on('gap', info => gaps.push(info))
  const errors: Error[] = []
  b.wsManager.on('gap', () => { throw new Error('a listener that throws') })
  b.wsManager.on('error', err => errors.push(err))
  const onA = await connect(a, '/ws?user=ann')
  const onB = await connect(b, '/ws')

  await a.wsManager.broadcast('before')
  t.equal(await onA.next(), 'before')
  t.equal(await onB.next(), 'before')

  await redis.stop()
  await until(() => a.wsManager.health().status === 'degraded' && b.wsManager.health().status === 'degraded')
  t.match(a.wsManager.health(), { status: 'degraded', adapter: { status: 'down' } })

  for (let i = 0; i < 8; i++) await a.wsManager.broadcast(`during ${i}`)
  for (let i = 0; i < 8; i++) t.equal(await onA.next(), `during ${i}`, 'local delivery does not wait on Redis')
  t.match(a.wsManager.health().adapter, { queued: 5, dropped: 3 }, 'five kept, three dropped and counted')

  await redis.start()
  await until(() => gaps.length === 2, 5000, 'both instances report the gap')
  t.match(gaps.find(g => g.dropped > 0), { dropped: 3 })
  t.ok(gaps.every(g => g.downMs > 0))
  t.match(errors, [{ message: 'a listener that throws' }], 'a throwing gap listener is reported, not thrown')
  const queued = []
  for (let i = 0; i < 5; i++) queued.push(await onB.next())
  t.same(queued, [0, 1, 2, 3, 4].map(i => `during ${i}`), 'the queued publishes went out in order once Redis was back')

  await until(() => b.wsManager.health().status === 'ok')
  await b.wsManager.broadcast('after')
  t.equal(await onA.next(), 'after', 'delivery between instances resumed by itself')
  t.equal(await onB.next(), 'after')
  t.match(a.wsManager.health(), { status: 'ok', adapter: { status: 'up', queued: 0, dropped: 0, gaps: 1 } })
  t.equal(await b.wsManager.cluster.isUserConnected('ann'), true, 'a wrote its presence again into the Redis that came back empty')
  t.equal(await b.wsManager.cluster.getConnectionCount(), 2)
  await onA.close()
  await onB.close()
})

test('an app starts while Redis is down (degraded) and joins the others once it is up', { skip }, async (t) => {
  const redis = await startRedis(t)
  const port = redis.port
  await redis.stop()
  const a = await instance(t, redis)
  t.equal(a.wsManager.health().status, 'degraded')
  const gaps: GapInfo[] = []
  a.wsManager.on('gap', info => gaps.push(info))
  await redis.start()
  t.equal(redis.port, port)
  await until(() => a.wsManager.health().status === 'ok', 5000)
  const b = await instance(t, redis)
  const client = await connect(a, '/ws')
  await until(() => gaps.length === 1)
  await b.wsManager.broadcast('hello')
  t.equal(await client.next(), 'hello')
  await client.close()
})
