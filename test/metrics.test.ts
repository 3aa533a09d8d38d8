import { test } from 'tap'
import Fastify from 'fastify'
import { Registry } from 'prom-client'
import wsStabilizer from '../plugin.ts'
import { RedisAdapter } from '../lib/adapters/redis.ts'
import { buildApp, connect, until, urlOf, TestClient } from './helpers.ts'
import { redisAvailable, startRedis } from './redis-server.ts'

/*
 * Metrics: per-connection and per-user figures on the manager, and every counter of
 * getStats() in an app's prom-client registry, read at scrape time.
 */

/** The value of one sample line (`name{labels} value`) in Prometheus text, or undefined. */
function sample (text: string, series: string): number | undefined {
  const line = text.split('\n').find(l => l.startsWith(series + ' '))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

test('per-connection and per-user figures', async (t) => {
  const app = await buildApp(t, {}, app => {
    app.get('/ws', { websocket: true, config: { ws: { rooms: ['lobby'], identify: r => ({ userId: (r.query as { user?: string }).user }) } } }, (_s, request) => {
      request.wsConnection!.on('message', data => request.wsConnection!.send(`echo ${data.toString()}`))
    })
  })
  const a = await connect(app, '/ws?user=ann')
  const b = await connect(app, '/ws?user=ann')
  const c = await connect(app, '/ws?user=bob')
  const [first, second] = app.wsManager.getUserConnections('ann')
  second.join('dev')
  a.send('12345')
  t.equal(await a.next(), 'echo 12345')
  b.send('1')
  t.equal(await b.next(), 'echo 1')

  const conn = app.wsManager.getConnectionStats(first.id)!
  t.match(conn, { clientId: first.id, userId: 'ann', route: '/ws', messagesIn: 1, messagesOut: 1, bytesIn: 5, bytesOut: 10, rttMs: undefined, bufferedBytes: 0, rooms: ['lobby'] })
  t.ok(conn.durationMs >= 0 && conn.connectedAt instanceof Date)
  t.equal(app.wsManager.getConnectionStats('nobody'), undefined)

  const ann = app.wsManager.getUserStats('ann')
  t.match(ann, { userId: 'ann', connections: 2, messagesIn: 2, messagesOut: 2, bytesIn: 6, bytesOut: 16 })
  t.same(ann.rooms.sort(), ['dev', 'lobby'])
  t.equal(ann.connectedSince!.getTime(), Math.min(first.connectedAt.getTime(), second.connectedAt.getTime()), 'the oldest connection')
  t.same(app.wsManager.getUserStats('nobody'), { userId: 'nobody', connections: 0, connectedSince: undefined, rooms: [], messagesIn: 0, messagesOut: 0, bytesIn: 0, bytesOut: 0 })
  t.same(app.wsManager.getStats().connectionsByRoute, { '/ws': 3 })
  for (const client of [a, b, c]) await client.close()
})

test('Prometheus: every figure in the app\'s registry, read at scrape time, one snapshot per scrape; gone after close', async (t) => {
  const registry = new Registry()
  const app = await buildApp(t, { prometheus: { registry }, heartbeat: { interval: 20, timeout: 5000 }, limits: { maxConnectionsPerUser: 1 } }, app => {
    app.get('/a', { websocket: true, config: { ws: { rooms: ['all'], identify: r => ({ userId: (r.query as { user?: string }).user }) } } }, (_s, request) => {
      request.wsConnection!.on('message', () => {})
    })
    app.get('/b', { websocket: true, config: { ws: { messages: { ping: { handler: () => 'pong' } } } } }, () => {})
  })
  t.equal(app.wsManager.getStats().latency?.count, 0, 'prometheus turns the round-trip histogram on')
  const a1 = await connect(app, '/a?user=ann')
  const a2 = await connect(app, '/a')
  const b1 = await connect(app, '/b')
  const refused = await connect(app, '/a?user=ann')
  t.equal((await refused.closed).code, 4409)
  a1.send('hello')
  b1.send('not json')
  await b1.next()
  await app.wsManager.broadcast('to all', { room: 'all' })
  await until(() => (app.wsManager.getStats().latency?.count ?? 0) >= 1, 2000, 'a round trip')

  let snapshots = 0
  const getStats = app.wsManager.getStats.bind(app.wsManager)
  app.wsManager.getStats = () => { snapshots++; return getStats() }
  const text = await registry.metrics()
  t.equal(snapshots, 1, 'one snapshot for the whole scrape')
  app.wsManager.getStats = getStats

  t.equal(sample(text, 'ws_connections{route="/a"}'), 2)
  t.equal(sample(text, 'ws_connections{route="/b"}'), 1)
  t.equal(sample(text, 'ws_users'), 1)
  t.equal(sample(text, 'ws_rooms'), 1)
  t.equal(sample(text, 'ws_draining'), 0)
  t.equal(sample(text, 'ws_connects_total'), 3)
  t.equal(sample(text, 'ws_rejected_connections_total{reason="user_limit"}'), 1, 'the second connection of ann')
  t.equal(sample(text, 'ws_inbound_rejected_total{code="INVALID_JSON"}'), 1)
  t.equal(sample(text, 'ws_messages_received_total'), 2)
  t.equal(sample(text, 'ws_received_bytes_total'), 13)
  t.equal(sample(text, 'ws_messages_sent_total'), 2, 'the broadcast, to two')
  t.equal(sample(text, 'ws_sent_bytes_total'), 12)
  t.equal(sample(text, 'ws_broadcasts_total'), 1)
  t.equal(sample(text, 'ws_failed_deliveries_total'), 0)
  t.equal(sample(text, 'ws_dropped_messages_total'), 0)
  t.equal(sample(text, 'ws_heartbeat_timeouts_total'), 0)
  t.match(text, /# TYPE ws_connects_total counter/)
  t.match(text, /# TYPE ws_connections gauge/)
  t.match(text, /# TYPE ws_heartbeat_rtt_seconds histogram/)
  const count = sample(text, 'ws_heartbeat_rtt_seconds_count')!
  t.ok(count >= 1)
  t.equal(sample(text, 'ws_heartbeat_rtt_seconds_bucket{le="+Inf"}'), count)
  t.equal(sample(text, 'ws_heartbeat_rtt_seconds_bucket{le="5"}'), count, 'buckets in seconds: all under 5 s')
  t.ok(sample(text, 'ws_heartbeat_rtt_seconds_sum')! >= 0)
  t.equal(sample(text, 'ws_adapter_up{adapter="memory"}'), 1)
  t.notMatch(text, /ws_adapter_published_total\{/, 'the memory adapter reports no traffic figures')

  await a2.close()
  await until(() => app.wsManager.getConnectionCount() === 2)
  const again = await registry.metrics()
  t.equal(sample(again, 'ws_connections{route="/a"}'), 1, 'a later scrape reads again')
  t.equal(sample(again, 'ws_disconnects_total{reason="client_close"}'), 1)
  for (const client of [a1, b1]) await client.close()
  await app.close()
  t.same(registry.getMetricsAsArray(), [], 'the metrics leave the registry with the app')
})

test('Prometheus options: a prefix; a registry that is not one, a bad prefix and a taken name are refused at register', async (t) => {
  const registry = new Registry()
  const app = await buildApp(t, { prometheus: { registry, prefix: 'chat_' }, shutdown: { timeout: 200 } }, app => {
    app.get('/ws', { websocket: true }, () => {})
  })
  const silent = await connect(app, '/ws')
  // it never reads the close frame, so the shutdown waits for it
  ;(silent.ws as unknown as { _socket: { pause (): void } })._socket.pause()
  const draining = app.close()
  await until(() => app.wsManager.draining)
  t.equal(sample(await registry.metrics(), 'chat_draining'), 1, 'draining while it closes')
  await draining

  const bad: Array<[unknown, RegExp]> = [
    [{}, /Expected `prometheus.registry` to be a prom-client Registry.*got `\{\}`/],
    [{ registry: { registerMetric () {} } }, /prometheus.registry/],
    [null, /prometheus.registry.*got `null`/],
    [{ registry, prefix: 'bad-prefix' }, /Expected `prometheus.prefix` to be a metric name prefix .*got `"bad-prefix"`/],
    [{ registry, prefix: 5 }, /prometheus.prefix.*got `5`/]
  ]
  for (const [prometheus, message] of bad) {
    const app = Fastify()
    await t.rejects(async () => await app.register(wsStabilizer, { prometheus } as never).ready(), { code: 'FST_WS_INVALID_OPTIONS', message })
    await app.close()
  }

  const taken = new Registry()
  const first = await buildApp(t, { prometheus: { registry: taken } })
  const second = Fastify()
  await t.rejects(async () => await second.register(wsStabilizer, { prometheus: { registry: taken } }).ready(), /ws_connections has already been registered/, 'two apps on one registry need prefixes')
  await second.close()
  await first.close()
})

test('Prometheus with the Redis adapter: its health and traffic figures', { skip: !redisAvailable() && 'redis-server is not installed' }, async (t) => {
  const redis = await startRedis(t)
  const registry = new Registry()
  const app = await buildApp(t, { prometheus: { registry }, adapter: new RedisAdapter({ url: redis.url, prefix: 'metrics' }) }, app => {
    app.get('/ws', { websocket: true }, () => {})
  })
  const client = await TestClient.open(urlOf(app, '/ws'))
  await app.wsManager.broadcast('one')
  t.equal(await client.next(), 'one')
  const text = await registry.metrics()
  t.equal(sample(text, 'ws_adapter_up{adapter="redis"}'), 1)
  t.equal(sample(text, 'ws_adapter_published_total{adapter="redis"}'), 1)
  t.equal(sample(text, 'ws_adapter_queued{adapter="redis"}'), 0)
  t.equal(sample(text, 'ws_adapter_dropped_total{adapter="redis"}'), 0)
  await redis.stop()
  await until(() => app.wsManager.health().status === 'degraded', 3000)
  t.equal(sample(await registry.metrics(), 'ws_adapter_up{adapter="redis"}'), 0, 'down while Redis is')
  await client.close()
})
