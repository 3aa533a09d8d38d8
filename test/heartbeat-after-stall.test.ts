import { test } from 'tap'
import { once } from 'node:events'
import WebSocket from 'ws'
import type { DisconnectInfo } from '../plugin.ts'
import { buildApp, until } from './helpers.ts'

/*
 * After the event loop was held past the heartbeat timeout, a sweep comes before the sockets
 * are read: a client whose pong waits in its socket must not be taken for dead.
 */

const heartbeat = { mode: 'ping' as const, interval: 40, timeout: 200 }

function hold (ms: number): void {
  const until = Date.now() + ms
  while (Date.now() < until) { /* the loop is held, as by a reconnect storm */ }
}

test('a pong that waits in the socket while the loop is held keeps its client: the sweep judges after the sockets are read', async (t) => {
  const ended: DisconnectInfo[] = []
  const app = await buildApp(t, { heartbeat }, app => {
    app.get('/ws', { websocket: true }, () => {})
  })
  app.wsManager.on('disconnect', (_conn, info) => ended.push(info))
  const { port } = app.server.address() as { port: number }
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`)
  await once(ws, 'open')
  // ws has written its pong when it emits `ping`: the loop is then held for longer than the timeout
  let held = 0
  ws.on('ping', () => {
    if (held++ === 0) hold(heartbeat.timeout * 2)
  })
  await until(() => held > 0, 2000, 'the first ping')
  // two more pings answered in time: the connection lived through the sweep that came late
  await until(() => held >= 3, 2000, 'two more pings')
  t.equal(ws.readyState, WebSocket.OPEN, 'the client is still connected')
  t.same(ended, [], 'nobody was timed out')
  t.equal(app.wsManager.getStats().heartbeatTimeoutsTotal, 0)
  ws.close()
  await once(ws, 'close')
})

test('a client that does not answer is still timed out once, after a held loop too', async (t) => {
  const ended: DisconnectInfo[] = []
  const app = await buildApp(t, { heartbeat }, app => {
    app.get('/ws', { websocket: true }, () => {})
  })
  app.wsManager.on('disconnect', (_conn, info) => ended.push(info))
  const { port } = app.server.address() as { port: number }
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, { autoPong: false })
  await once(ws, 'open')
  ws.once('ping', () => { hold(heartbeat.timeout * 2) })
  const [code] = await once(ws, 'close') as [number]
  t.equal(code, 1006, 'terminated')
  t.same(ended.map(e => e.disconnectReason), ['heartbeat_timeout'])
  t.equal(app.wsManager.getStats().heartbeatTimeoutsTotal, 1)
})

test('a connection that ends between the sweep and the verdict is not timed out as well', async (t) => {
  const ended: Array<[string, DisconnectInfo]> = []
  const app = await buildApp(t, { heartbeat }, app => {
    app.get('/ws', { websocket: true, config: { ws: { identify: r => ({ clientId: (r.query as { id: string }).id }) } } }, () => {})
  })
  const { port } = app.server.address() as { port: number }
  const clients = ['a', 'b'].map(id => new WebSocket(`ws://127.0.0.1:${port}/ws?id=${id}`, { autoPong: false }))
  await Promise.all(clients.map(async ws => await once(ws, 'open')))
  await until(() => app.wsManager.getConnectionCount() === 2)
  // the first one timed out closes the other before its verdict: both were overdue in one sweep
  app.wsManager.on('disconnect', (conn, info) => {
    ended.push([conn.id, info])
    if (ended.length === 1) app.wsManager.getConnection(conn.id === 'a' ? 'b' : 'a')!.close(4000, 'gone first')
  })
  hold(heartbeat.timeout * 2)
  await Promise.all(clients.map(async ws => await once(ws, 'close')))
  t.same(ended.map(([, info]) => info.disconnectReason).sort(), ['heartbeat_timeout', 'server_disconnect'].sort(), 'one timed out, the other closed')
  t.equal(app.wsManager.getStats().heartbeatTimeoutsTotal, 1, 'the closed one is not counted as a timeout')
})
