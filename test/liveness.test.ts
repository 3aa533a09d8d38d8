import { test } from 'tap'
import type { DisconnectInfo } from '../plugin.ts'
import { buildApp, connect, until } from './helpers.ts'

// the timeout well above the interval, so that a busy machine's stall is not taken for silence
const fast = { interval: 40, timeout: 300 }

test('ping mode: a live client stays and gets a round trip; a half-open one is terminated', async (t) => {
  const ended: Array<[string, DisconnectInfo]> = []
  const app = await buildApp(t, { heartbeat: { ...fast, mode: 'ping' } }, app => {
    app.get('/ws', { websocket: true, config: { ws: { rooms: ['r'], identify: r => ({ clientId: (r.query as { id: string }).id }) } } }, () => {})
  })
  app.wsManager.on('disconnect', (conn, info) => ended.push([conn.id, info]))
  const live = await connect(app, '/ws?id=live')
  const halfOpen = await connect(app, '/ws?id=dead', { autoPong: false })
  const closed = await halfOpen.closed
  t.equal(closed.code, 1006, 'terminated: no close frame')
  t.equal(ended.length, 1)
  t.equal(ended[0][0], 'dead')
  t.equal(ended[0][1].disconnectReason, 'heartbeat_timeout')
  t.same(app.wsManager.getRoomMembers('r'), ['live'], 'removed from rooms too')
  t.equal(app.wsManager.getStats().heartbeatTimeoutsTotal, 1)
  const started = Date.now()
  await until(() => Date.now() - started > 3 * fast.timeout, 2000)
  t.equal(live.ws.readyState, 1, 'the answering client survived several timeouts')
  t.type(app.wsManager.getConnection('live')!.rtt, 'number')
  await live.close()
})

test('message mode: JSON pings, pong answers keep a client, silence does not; client pings are answered', async (t) => {
  const inbound: string[] = []
  const app = await buildApp(t, { heartbeat: { ...fast, mode: 'message' } }, app => {
    app.get('/ws', { websocket: true }, (_s, request) => { request.wsConnection!.on('message', d => inbound.push(d.toString())) })
  })
  const polite = await connect(app, '/ws')
  polite.ws.on('message', d => {
    const m = JSON.parse(d.toString()) as { type: string, ts: number }
    if (m.type === 'ping') polite.ws.send(JSON.stringify({ type: 'pong', ts: m.ts }))
  })
  const silent = await connect(app, '/ws')
  const ping = await silent.json<{ type: string, ts: number }>()
  t.equal(ping.type, 'ping')
  t.type(ping.ts, 'number')
  t.equal((await silent.closed).code, 1006)
  polite.ws.send('{"type":"ping"}')
  await until(() => app.wsManager.getConnectionCount() === 1)
  const started = Date.now()
  await until(() => Date.now() - started > 3 * fast.timeout, 2000)
  t.equal(polite.ws.readyState, 1)
  const conn = [...app.wsManager.connections()][0]
  t.type(conn.rtt, 'number')
  t.same(inbound, [], 'heartbeat frames never reach the listeners')
  t.equal(conn.stats.messagesIn, 0, 'nor the counters')
  t.equal(conn.stats.messagesOut, 0)
  await polite.close()
})

test('message mode: a client ping gets a pong with the server time', async (t) => {
  const app = await buildApp(t, { heartbeat: { interval: 10_000, timeout: 20_000, mode: 'message' } }, app => {
    app.get('/ws', { websocket: true }, () => {})
  })
  const client = await connect(app, '/ws')
  client.send('{"type":"ping"}')
  const pong = await client.json<{ type: string, ts: number }>()
  t.equal(pong.type, 'pong')
  t.ok(Math.abs(pong.ts - Date.now()) < 1000)
  await client.close()
})

test('any inbound traffic counts as life', async (t) => {
  const app = await buildApp(t, { heartbeat: fast }, app => {
    app.get('/ws', { websocket: true }, (_s, r) => { r.wsConnection!.on('message', () => {}) })
  })
  const chatty = await connect(app, '/ws', { autoPong: false })
  const timer = setInterval(() => chatty.send('still here'), 20)
  const started = Date.now()
  await until(() => Date.now() - started > 3 * fast.timeout, 2000)
  clearInterval(timer)
  t.equal(chatty.ws.readyState, 1)
  t.equal(app.wsManager.getConnectionCount(), 1)
  await chatty.close()
})

test('route overrides: a shorter heartbeat on one route, none on another, while the plugin default is long', async (t) => {
  const app = await buildApp(t, { heartbeat: { interval: 60_000, timeout: 120_000 } }, app => {
    app.get('/fast', { websocket: true, config: { ws: { heartbeat: fast } } }, () => {})
    app.get('/off', { websocket: true, config: { ws: { heartbeat: false } } }, () => {})
  })
  t.equal(app.wsManager.heartbeat.tick, fast.interval)
  const dead = await connect(app, '/fast', { autoPong: false })
  const quiet = await connect(app, '/off', { autoPong: false })
  t.equal((await dead.closed).code, 1006)
  t.equal(quiet.ws.readyState, 1, 'no heartbeat on /off')
  t.equal(app.wsManager.getConnectionCount(), 1)
  await quiet.close()
})

test('a route can turn the heartbeat on when the plugin has it off', async (t) => {
  const app = await buildApp(t, { heartbeat: { enabled: false } }, app => {
    app.get('/ws', { websocket: true, config: { ws: { heartbeat: { enabled: true, ...fast } } } }, () => {})
  })
  const dead = await connect(app, '/ws', { autoPong: false })
  t.equal((await dead.closed).code, 1006)
})

test('handlePong keeps a client alive for custom flows', async (t) => {
  const app = await buildApp(t, { heartbeat: fast }, app => {
    app.get('/ws', { websocket: true, config: { ws: { identify: () => ({ clientId: 'c' }) } } }, () => {})
  })
  const client = await connect(app, '/ws', { autoPong: false })
  const timer = setInterval(() => app.wsManager.handlePong('c'), 20)
  const started = Date.now()
  await until(() => Date.now() - started > 3 * fast.timeout, 2000)
  clearInterval(timer)
  t.equal(client.ws.readyState, 1)
  t.equal(app.wsManager.handlePong('nobody'), false)
  await client.close()
})

test('the heartbeat timer is gone after close', async (t) => {
  const app = await buildApp(t, { heartbeat: fast }, app => { app.get('/ws', { websocket: true }, () => {}) })
  const client = await connect(app, '/ws')
  t.ok(app.wsManager.heartbeat.running)
  await app.close()
  t.notOk(app.wsManager.heartbeat.running)
  await client.closed
})

test('client pings count as life', async (t) => {
  // a timeout well above the ping period, so that a busy machine's stall is not silence
  const app = await buildApp(t, { heartbeat: { interval: 40, timeout: 300 } }, app => { app.get('/ws', { websocket: true }, () => {}) })
  const client = await connect(app, '/ws', { autoPong: false })
  const timer = setInterval(() => client.ws.ping(), 20)
  const started = Date.now()
  await until(() => Date.now() - started > 900, 2000)
  clearInterval(timer)
  t.equal(client.ws.readyState, 1)
  await client.close()
})

test('manager: start() twice is harmless; register() without rooms; the heartbeat re-arms after stop/start with connections', async (t) => {
  const app = await buildApp(t, { heartbeat: { interval: 30, timeout: 90 } }, app => {
    app.get('/raw', { websocket: true, config: { ws: false } }, (socket) => { app.wsManager.register(socket, { clientId: 'manual' }) })
  })
  await app.wsManager.start()
  const client = await connect(app, '/raw', { autoPong: false })
  t.same([...app.wsManager.getConnection('manual')!.rooms], [])
  app.wsManager.heartbeat.stop()
  t.notOk(app.wsManager.heartbeat.running)
  app.wsManager.heartbeat.start()
  t.ok(app.wsManager.heartbeat.running)
  t.equal((await client.closed).code, 1006, 'the re-armed heartbeat still finds the silent client')
})
