import { test } from 'tap'
import { Redis } from 'ioredis'
import { RedisAdapter } from '../lib/adapters/redis.ts'
import { buildApp, connect, until } from './helpers.ts'
import { redisAvailable, startRedis } from './redis-server.ts'

const skip = !redisAvailable() && 'redis-server is not installed'

interface Welcome { clientId: string, token: string, offset: number, resumed: boolean, resumeFailed?: string }

test('the Redis adapter with the app\'s own clients, prefixes, and bytes that are not messages', { skip }, async (t) => {
  const redis = await startRedis(t)

  t.test('a client you give stays open (its duplicate subscriber is closed); with closeClients both go', async (t) => {
    const client = new Redis(redis.url)
    t.teardown(() => client.disconnect())
    const listeners = client.listenerCount('ready')
    const adapter = new RedisAdapter({ client, prefix: 'given' })
    const app = await buildApp(t, { adapter }, app => { app.get('/ws', { websocket: true }, () => {}) })
    t.equal(app.wsManager.health().status, 'ok')
    await app.close()
    t.equal(client.status, 'ready', 'your client is yours')
    t.equal(client.listenerCount('ready'), listeners, 'and the adapter took its listeners back')
    await until(() => adapter.subscriber.status === 'end', 1000, 'the subscriber it made is closed')

    const mine = new Redis(redis.url)
    const sub = new Redis(redis.url)
    const both = new RedisAdapter({ client: mine, subscriber: sub, closeClients: true, prefix: 'given' })
    const other = await buildApp(t, { adapter: both })
    await other.close()
    await until(() => mine.status === 'end' && sub.status === 'end', 1000, 'both given clients closed')

    const kept = new Redis(redis.url)
    const keptSub = new Redis(redis.url)
    t.teardown(() => { kept.disconnect(); keptSub.disconnect() })
    const neither = new RedisAdapter({ client: kept, subscriber: keptSub, prefix: 'given' })
    const third = await buildApp(t, { adapter: neither })
    await third.close()
    t.equal(kept.status, 'ready')
    t.equal(keptSub.status, 'ready', 'unsubscribed, and left open')
  })

  t.test('environments with different prefixes never cross-talk; garbage on the channel is ignored', async (t) => {
    const [one, two, sibling] = await Promise.all(['staging', 'production', 'staging'].map(async prefix => await buildApp(t, { adapter: new RedisAdapter({ url: redis.url, prefix }) }, app => {
      app.get('/ws', { websocket: true }, () => {})
    })))
    const onTwo = await connect(two, '/ws')
    const onSibling = await connect(sibling, '/ws')
    const raw = new Redis(redis.url)
    t.teardown(() => raw.disconnect())
    await raw.publish('staging:msg', 'not a cluster message')
    await one.wsManager.broadcast('staging only')
    t.equal(await onSibling.next(), 'staging only')
    t.ok(await onTwo.silentFor(50), 'production heard nothing')
    await onTwo.close()
    await onSibling.close()
  })
})

test('defaults: prefix wss, the local Redis URL, nothing connected before the start', async (t) => {
  const adapter = new RedisAdapter()
  t.equal(adapter.channel, 'wss:msg')
  t.equal(adapter.client.status, 'wait', 'lazy: a test never touches the shared Redis')
  t.match(adapter.health(), { status: 'down' })
  await adapter.close()
})

test('messages published before the start go out once it is connected', { skip }, async (t) => {
  const redis = await startRedis(t)
  const listener = await buildApp(t, { adapter: new RedisAdapter({ url: redis.url, prefix: 'early' }) }, app => {
    app.get('/ws', { websocket: true }, () => {})
  })
  const client = await connect(listener, '/ws')
  const Fastify = (await import('fastify')).default
  const wsStabilizer = (await import('../plugin.ts')).default
  const early = Fastify()
  t.teardown(() => early.close())
  await early.register(wsStabilizer, { adapter: new RedisAdapter({ url: redis.url, prefix: 'early' }) })
  await early.after()
  await early.wsManager.broadcast('before ready')
  await early.ready()
  t.equal(await client.next(), 'before ready')
  await client.close()
})

test('an instance that loses Redis for good: its writes fail quietly, it drops out of the cluster, its plain connections cannot be resumed elsewhere', { skip }, async (t) => {
  const redis = await startRedis(t)
  const options = (presenceTtl: number): object => ({
    adapter: new RedisAdapter({ url: redis.url, prefix: 'lost', presenceTtl }),
    reconnect: { secret: 'lost-instance-secret-0123456789ab', maxDisconnect: 400 },
    limits: { maxConnectionsPerUser: 5 }
  })
  const routes = (app: Parameters<Parameters<typeof buildApp>[2] & object>[0]): void => {
    app.get('/ws', { websocket: true, config: { ws: { reconnect: true, identify: r => ({ userId: (r.query as { user?: string }).user }) } } }, () => {})
    app.get('/plain', { websocket: true, config: { ws: { identify: r => ({ userId: (r.query as { user?: string }).user }) } } }, () => {})
  }
  const x = await buildApp(t, options(100), routes)
  const y = await buildApp(t, options(100), routes)
  const plain = await connect(x, '/plain?user=pat')
  const resumable = await connect(x, '/ws?user=pat')
  await resumable.json<Welcome>()
  const plainId = x.wsManager.getUserConnections('pat').find(c => c.route.url === '/plain')!.id
  const token = x.wsManager.generateReconnectToken(plainId)
  await until(async () => await y.wsManager.cluster.getConnectionCount() === 2)

  const adapter = x.wsManager.adapter as RedisAdapter
  adapter.client.disconnect()
  adapter.subscriber.disconnect()
  await until(() => x.wsManager.health().status === 'degraded')

  await x.wsManager.broadcast('local only')
  t.equal(await plain.next(), 'local only', 'local delivery goes on')
  const late = await connect(x, '/plain?user=pat')
  t.equal(late.ws.readyState, 1, 'the per-user count of the others is unknown: this instance alone counts')
  await resumable.close()
  await until(() => adapter.presence.failedWrites > 0)

  await until(async () => await y.wsManager.cluster.getConnectionCount() === 0, 2000, 'x drops out')
  const back = await connect(y, `/ws?resume=${token}`)
  t.match(await back.json<Welcome>(), { resumed: false, resumeFailed: 'unknown_session' }, 'a plain connection leaves nothing to resume')
  const raw = new Redis(redis.url)
  t.teardown(() => raw.disconnect())
  await until(async () => {
    await y.wsManager.cluster.getConnectionCount()
    return !(await raw.smembers('lost:instances')).includes(x.wsManager.instanceId)
  }, 3000, 'the dead instance is pruned once its presence is gone')
  for (const client of [plain, late, back]) await client.close()
})

test('a client still open on one instance resumes on another: the old socket there is replaced (4001); a draining app says so', { skip }, async (t) => {
  const redis = await startRedis(t)
  const make = async (): Promise<Awaited<ReturnType<typeof buildApp>>> => await buildApp(t, { adapter: new RedisAdapter({ url: redis.url, prefix: 'halfopen' }), reconnect: { secret: 'half-open-secret-0123456789abcdef' } }, app => {
    app.get('/ws', { websocket: true, config: { ws: { reconnect: true, identify: () => ({ userId: 'hal', metadata: { tier: 'gold' } }) } } }, () => {})
  })
  const x = await make()
  const y = await make()
  const old = await connect(x, '/ws')
  const welcome = await old.json<Welcome>()
  x.wsManager.join(welcome.clientId, 'deck')
  await new Promise(resolve => setTimeout(resolve, 30))
  const fresh = await connect(y, `/ws?resume=${welcome.token}&offset=${welcome.offset}`)
  t.match(await fresh.json<Welcome>(), { clientId: welcome.clientId, resumed: true })
  t.match(await old.closed, { code: 4001 })
  await until(() => x.wsManager.getConnectionCount() === 0)
  const conn = y.wsManager.getConnection(welcome.clientId)!
  t.same([...conn.rooms], ['deck'])
  t.same(conn.metadata, { tier: 'gold' })
  const nobody = await connect(y, `/ws?resume=${y.wsManager.generateReconnectToken('nobody')}`)
  t.match(await nobody.json<Welcome>(), { resumed: false, resumeFailed: 'unknown_session' }, 'a client no instance knows')
  const shutdown = y.wsManager.gracefulShutdown({ timeout: 200 })
  t.equal(y.wsManager.health().status, 'draining')
  await shutdown
})

test('a publish that times out while Redis stays up is counted as dropped and reported as a gap at once', { skip }, async (t) => {
  const redis = await startRedis(t)
  const adapter = new RedisAdapter({ url: redis.url, prefix: 'slow', redisOptions: { commandTimeout: 250 } })
  const app = await buildApp(t, { adapter })
  const gaps: unknown[] = []
  app.wsManager.on('gap', info => gaps.push(info))
  const raw = new Redis(redis.url)
  t.teardown(() => raw.disconnect())
  // margins wide enough for a loaded machine: the sleep outlasts the timeout by far
  const sleeping = raw.call('DEBUG', 'SLEEP', '0.8')
  await new Promise(resolve => setTimeout(resolve, 50))
  await app.wsManager.broadcast('into a sleeping Redis')
  await until(() => gaps.length === 1, 2000)
  t.match(gaps, [{ downMs: 0, dropped: 1 }])
  await sleeping
  t.match(app.wsManager.health(), { status: 'ok', adapter: { dropped: 0, gaps: 1 } })
})

test('a burst of messages in one turn of the event loop is copied to Redis whole, in order, and replays on another instance', { skip }, async (t) => {
  const redis = await startRedis(t)
  const make = async (): Promise<Awaited<ReturnType<typeof buildApp>>> => await buildApp(t, { adapter: new RedisAdapter({ url: redis.url, prefix: 'burst' }), reconnect: { secret: 'burst-secret-0123456789abcdefgh' } }, app => {
    app.get('/ws', { websocket: true, config: { ws: { reconnect: true } } }, () => {})
  })
  const x = await make()
  const y = await make()
  const client = await connect(x, '/ws')
  const welcome = await client.json<Welcome>()
  await client.close()
  await until(() => x.wsManager.getConnectionCount() === 0)
  const sent: Array<Promise<unknown>> = []
  for (let i = 0; i < 900; i++) sent.push(x.wsManager.broadcast({ i }))
  await Promise.all(sent)
  await new Promise(resolve => setTimeout(resolve, 100))
  const back = await connect(y, `/ws?resume=${welcome.token}&offset=${welcome.offset}`)
  t.match(await back.json<Welcome>(), { resumed: true, replayed: 900 })
  const got: number[] = []
  for (let i = 0; i < 900; i++) got.push((await back.json<{ data: { i: number } }>()).data.i)
  t.same(got, Array.from({ length: 900 }, (_, i) => i))
  await back.close()
})

test('a graceful close removes the instance\'s presence at once (no waiting for its expiry)', { skip }, async (t) => {
  const redis = await startRedis(t)
  const make = async (): Promise<Awaited<ReturnType<typeof buildApp>>> => await buildApp(t, { adapter: new RedisAdapter({ url: redis.url, prefix: 'graceful', presenceTtl: 60_000 }) }, app => {
    app.get('/ws', { websocket: true, config: { ws: { identify: () => ({ userId: 'gus' }) } } }, () => {})
  })
  const x = await make()
  const y = await make()
  const client = await connect(x, '/ws')
  await until(async () => await y.wsManager.cluster.isUserConnected('gus'))
  await x.close()
  await client.closed
  t.equal(await y.wsManager.cluster.getConnectionCount(), 0, 'gone at once, with a 60 s presence ttl')
  t.equal(await y.wsManager.cluster.isUserConnected('gus'), false)
  const raw = new Redis(redis.url)
  t.teardown(() => raw.disconnect())
  t.same(await raw.keys(`graceful:*:${x.wsManager.instanceId}`), [], 'no key of it is left')
})
