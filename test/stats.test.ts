import { test } from 'tap'
import { buildApp, connect, until } from './helpers.ts'
import { RTT_BUCKETS, Stats } from '../lib/stats.ts'

test('with metrics on, heartbeat round trips fill a cumulative histogram', async (t) => {
  const app = await buildApp(t, { metrics: true, heartbeat: { interval: 20, timeout: 1000 } }, app => {
    app.get('/ws', { websocket: true }, () => {})
  })
  const client = await connect(app, '/ws')
  await until(() => (app.wsManager.getStats().latency?.count ?? 0) >= 2, 2000, 'two round trips')
  const latency = app.wsManager.getStats().latency!
  t.equal(latency.buckets.length, RTT_BUCKETS.length)
  t.equal(latency.buckets.at(-1)![1], latency.count, 'the last bucket holds every fast round trip')
  for (let i = 1; i < latency.buckets.length; i++) t.ok(latency.buckets[i][1] >= latency.buckets[i - 1][1], 'cumulative')
  t.ok(latency.sumMs >= 0)
  const conn = app.wsManager.getConnection(app.wsManager.getActiveConnections()[0])!
  t.type(conn.rtt, 'number')
  await client.close()
})

test('with metrics off there is no histogram', async (t) => {
  const stats = new Stats(false)
  stats.rtt(3)
  t.equal(stats.snapshot(0, 0, 0, []).latency, undefined)
})

test('a round trip slower than the last bucket is counted but in no bucket', async (t) => {
  const stats = new Stats(true)
  stats.rtt(3)
  stats.rtt(60_000)
  const latency = stats.snapshot(0, 0, 0, []).latency!
  t.equal(latency.count, 2)
  t.equal(latency.sumMs, 60_003)
  t.same(latency.buckets[0], [5, 1])
  t.same(latency.buckets.at(-1), [5000, 1])
})

test('message totals add closed and open connections', async (t) => {
  const app = await buildApp(t, {}, app => {
    app.get('/ws', { websocket: true }, (_s, request) => { request.wsConnection!.on('message', () => {}) })
  })
  const a = await connect(app, '/ws')
  const b = await connect(app, '/ws')
  a.send('12345')
  b.send('123')
  await until(() => app.wsManager.getStats().messagesIn === 2)
  await a.close()
  await until(() => app.wsManager.getConnectionCount() === 1)
  const stats = app.wsManager.getStats()
  t.equal(stats.messagesIn, 2)
  t.equal(stats.bytesIn, 8)
  await app.wsManager.broadcast('xy')
  t.equal(app.wsManager.getStats().messagesOut, 1)
  t.equal(app.wsManager.getStats().bytesOut, 2)
  await b.close()
})
