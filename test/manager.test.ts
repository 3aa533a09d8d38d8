import { test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import wsStabilizer, { MemoryAdapter, MemoryBus, type BroadcastResult, type DisconnectInfo, type ManagedConnection } from '../plugin.ts'
import { buildApp, connect, until, type TestClient } from './helpers.ts'

/** An app whose /ws route identifies by ?id=&user= and joins ?rooms=a,b; messages are echoed to the manager's 'message' hook. */
async function roomApp (t: Parameters<typeof buildApp>[0], options = {}): Promise<FastifyInstance> {
  return await buildApp(t, options, app => {
    app.get('/ws', {
      websocket: true,
      config: {
        ws: {
          rooms: ['all'],
          identify: (request) => {
            const q = request.query as { id?: string, user?: string }
            return { clientId: q.id, userId: q.user }
          }
        }
      }
    }, () => {})
  })
}

const open = (app: FastifyInstance, id: string, user?: string): Promise<TestClient> =>
  connect(app, `/ws?id=${id}${user === undefined ? '' : `&user=${user}`}`)

test('registry: clients, users with several connections, lookups', async (t) => {
  const app = await roomApp(t)
  const m = app.wsManager
  const a1 = await open(app, 'a1', 'ann')
  const a2 = await open(app, 'a2', 'ann')
  const b1 = await open(app, 'b1', 'bob')
  const anon = await open(app, 'x')
  t.same(m.getActiveConnections().sort(), ['a1', 'a2', 'b1', 'x'])
  t.equal(m.getConnectionCount(), 4)
  t.same(m.getUserConnections('ann').map(c => c.id).sort(), ['a1', 'a2'])
  t.same(m.getUserConnections('nobody'), [])
  t.ok(m.isUserConnected('bob'))
  t.notOk(m.isUserConnected('nobody'))
  t.same(m.getActiveUsers().sort(), ['ann', 'bob'])
  t.equal([...m.connections()].length, 4)
  const conn = m.getConnection('a1')!
  t.equal(conn.userId, 'ann')
  t.ok(conn.connectedAt instanceof Date)
  t.equal(conn.state, 'open')
  t.equal(m.getConnection('zzz'), undefined)
  await a1.close()
  await until(() => m.getUserConnections('ann').length === 1)
  t.ok(m.isUserConnected('ann'), 'still connected on the other device')
  await a2.close()
  await until(() => !m.isUserConnected('ann'))
  t.same(m.getActiveUsers(), ['bob'])
  await b1.close()
  await anon.close()
})

test('connect and disconnect events carry the connection and why it ended', async (t) => {
  const app = await roomApp(t)
  const connected: string[] = []
  const ended: DisconnectInfo[] = []
  app.wsManager.on('connect', conn => connected.push(conn.id))
  app.wsManager.on('disconnect', (_conn, info) => ended.push(info))
  const a = await open(app, 'a')
  const b = await open(app, 'b')
  t.same(connected, ['a', 'b'])
  await a.close()
  await until(() => ended.length === 1)
  t.match(ended[0], { disconnectReason: 'client_close', rooms: ['all'] })
  t.ok(ended[0].durationMs >= 0)
  app.wsManager.disconnect('b', 4000, 'bye')
  t.same(await b.closed, { code: 4000, reason: 'bye' })
  t.match(ended[1], { code: 4000, reason: 'bye', disconnectReason: 'server_disconnect' })
  t.equal(app.wsManager.disconnect('b'), false, 'not here: handed to the other instances')
})

test('a duplicate clientId replaces the old connection (4001); the old late close never removes the new one', async (t) => {
  const app = await roomApp(t)
  const m = app.wsManager
  const reasons: string[] = []
  m.on('disconnect', (_c, info) => reasons.push(info.disconnectReason))
  const old = await open(app, 'dup', 'ann')
  const oldConn = m.getConnection('dup')!
  oldConn.join('extra')
  const fresh = await open(app, 'dup', 'ann')
  const freshConn = m.getConnection('dup')!
  t.not(freshConn, oldConn)
  t.equal((await old.closed).code, 4001)
  // the old socket's close event has been processed by now: the new one must be untouched
  await until(() => oldConn.socket.readyState === 3)
  await new Promise(resolve => setImmediate(resolve))
  t.equal(m.getConnection('dup'), freshConn)
  t.same(m.getUserConnections('ann'), [freshConn])
  t.same(m.getRoomMembers('all'), ['dup'])
  t.same(m.getRoomMembers('extra'), [], 'the old connection\'s rooms are not inherited')
  t.same(reasons, ['replaced'])
  t.ok(fresh.ws.readyState === 1)
  await fresh.close()
})

test('rooms: joined on connect, join and leave by id or connection, events, empty rooms deleted', async (t) => {
  const app = await roomApp(t)
  const m = app.wsManager
  const events: string[] = []
  m.on('join', (conn, room) => events.push(`join ${conn.id} ${room}`))
  m.on('leave', (conn, room) => events.push(`leave ${conn.id} ${room}`))
  const a = await open(app, 'a')
  const b = await open(app, 'b')
  t.same(m.getRooms(), ['all'])
  t.equal(m.join('a', 'dev'), true)
  t.equal(m.join('a', 'dev'), false, 'already in')
  t.equal(m.getConnection('b')!.join('dev'), true)
  t.same(m.getRoomMembers('dev').sort(), ['a', 'b'])
  t.same([...m.getConnection('a')!.rooms].sort(), ['all', 'dev'])
  t.equal(m.leave('a', 'dev'), true)
  t.equal(m.leave('a', 'dev'), false, 'not in')
  t.equal(m.getConnection('b')!.leave('dev'), true)
  t.notOk(m.getRooms().includes('dev'), 'empty room deleted')
  t.same(m.getRoomMembers('dev'), [])
  t.same(events, ['join a dev', 'join b dev', 'leave a dev', 'leave b dev'])
  t.throws(() => m.join('nobody', 'dev'), { code: 'FST_WS_CONNECTION_NOT_FOUND' })
  t.throws(() => m.leave('nobody', 'dev'), { code: 'FST_WS_CONNECTION_NOT_FOUND' })
  t.throws(() => m.join('a', ''), { code: 'FST_WS_ERROR', message: /non-empty string/ })
  m.join('a', 'x')
  m.join('a', 'y')
  await a.close()
  await until(() => m.getConnectionCount() === 1)
  t.same(m.getRooms(), ['all'], 'leave-all on disconnect')
  await b.close()
})

test('send, sendToUser and broadcast: text, binary, JSON; exclude; rooms', async (t) => {
  const app = await roomApp(t)
  const m = app.wsManager
  const a1 = await open(app, 'a1', 'ann')
  const a2 = await open(app, 'a2', 'ann')
  const b = await open(app, 'b', 'bob')
  m.join('a1', 'r1')
  m.join('b', 'r1')
  m.join('b', 'r2')

  t.equal(m.send('b', 'hi b'), true)
  t.equal(await b.next(), 'hi b')
  t.equal(m.send('ghost', 'x'), false)

  const user = m.sendToUser('ann', { n: 1 })
  t.same(user, { total: 2, succeeded: 2, failed: 0, errors: [] })
  t.same(await a1.json(), { n: 1 })
  t.same(await a2.json(), { n: 1 })
  t.same(m.sendToUser('nobody', 'x'), { total: 0, succeeded: 0, failed: 0, errors: [] })

  const bin = await (async () => { m.send('a1', Buffer.from([1, 2, 3])); return await a1.nextMessage() })()
  t.equal(bin.isBinary, true)
  t.same([...(bin.data as Buffer)], [1, 2, 3])
  t.equal(m.getConnection('a2')!.send(new Uint8Array([7])), true)
  t.equal((await a2.nextMessage()).isBinary, true)

  t.same(await m.broadcast('all of you'), { total: 3, succeeded: 3, failed: 0, errors: [] })
  for (const c of [a1, a2, b]) t.equal(await c.next(), 'all of you')

  t.equal((await m.broadcast('not a1', { exclude: 'a1' })).total, 2)
  t.equal(await a2.next(), 'not a1')
  t.equal(await b.next(), 'not a1')
  t.equal((await m.broadcast('only b', { exclude: ['a1', 'a2'] })).total, 1)
  t.equal(await b.next(), 'only b')

  t.equal((await m.broadcast('r1', { room: 'r1' })).total, 2)
  t.equal(await a1.next(), 'r1')
  t.equal(await b.next(), 'r1')
  const both = await m.broadcast('r1 or r2', { room: ['r1', 'r2'] })
  t.equal(both.total, 2, 'b is in both rooms and is counted once')
  t.equal(await a1.next(), 'r1 or r2')
  t.equal(await b.next(), 'r1 or r2')
  t.same(await m.broadcast('nobody', { room: 'empty' }), { total: 0, succeeded: 0, failed: 0, errors: [] })

  for (const c of [a1, a2, b]) t.ok(await c.silentFor(30), 'nothing else arrived')
  await t.rejects(m.broadcast(() => 1), { code: 'FST_WS_INVALID_MESSAGE' })
  for (const c of [a1, a2, b]) await c.close()
})

test('a socket that fails mid-broadcast is reported and never stops the others; all failing rejects', async (t) => {
  const app = await roomApp(t)
  const m = app.wsManager
  const a = await open(app, 'a')
  const b = await open(app, 'b')
  const c = await open(app, 'c')
  m.getConnection('b')!.socket.terminate()
  t.equal(b.ws.readyState, 1, 'the client has not noticed yet')
  const result: BroadcastResult = await m.broadcast('after b died')
  t.equal(result.total, 3)
  t.equal(result.succeeded, 2)
  t.equal(result.failed, 1)
  t.same(result.errors, [['b', 'connection is not open']])
  t.equal(await a.next(), 'after b died')
  t.equal(await c.next(), 'after b died')
  t.equal(m.getStats().failedDeliveriesTotal, 1)

  m.getConnection('a')!.socket.terminate()
  m.getConnection('c')!.socket.terminate()
  const err = await m.broadcast('nobody left', { room: 'all' }).then(() => undefined, (e: unknown) => e as Error & { code: string, result: BroadcastResult })
  t.equal(err?.code, 'FST_WS_BROADCAST_FAILED')
  t.equal(err?.result.succeeded, 0)
  t.ok(err !== undefined && err.result.failed >= 2 && err.result.failed === err.result.total, 'a and c (b may have left already)')
  await until(() => m.getConnectionCount() === 0)
})

test('inbound messages sent before the handler listens are queued and delivered in order', async (t) => {
  const got: string[] = []
  const app = await buildApp(t, {}, app => {
    app.get('/slow', { websocket: true }, async (_s, request) => {
      await new Promise(resolve => setTimeout(resolve, 50))
      request.wsConnection!.on('message', d => got.push(d.toString()))
    })
  })
  const client = await connect(app, '/slow')
  for (let i = 0; i < 5; i++) client.send(`m${i}`)
  await until(() => got.length === 5)
  client.send('m5')
  await until(() => got.length === 6)
  t.same(got, ['m0', 'm1', 'm2', 'm3', 'm4', 'm5'])
  await client.close()
})

test('the inbound queue is bounded: overflow closes with 1008; a raw-socket route is never closed by it', async (t) => {
  const raw: string[] = []
  const app = await buildApp(t, {}, app => {
    app.get('/deaf', { websocket: true, config: { ws: { limits: { maxQueuedMessages: 3 } } } }, () => {})
    app.get('/raw', { websocket: true, config: { ws: { limits: { maxQueuedMessages: 3 } } } }, (socket) => {
      socket.on('message', d => raw.push(d.toString()))
    })
  })
  const deaf = await connect(app, '/deaf')
  const rawClient = await connect(app, '/raw')
  for (let i = 0; i < 10; i++) {
    deaf.send(`d${i}`)
    rawClient.send(`r${i}`)
  }
  t.equal((await deaf.closed).code, 1008)
  await until(() => raw.length === 10)
  t.equal(rawClient.ws.readyState, 1)
  t.equal(app.wsManager.getStats().disconnectsTotal.queue_overflow, 1)
  await rawClient.close()
})

test('a listener that throws or rejects is reported and does not crash; the connection goes on', async (t) => {
  const errors: Array<[Error, ManagedConnection | undefined]> = []
  const app = await buildApp(t, {}, app => {
    app.get('/ws', { websocket: true }, (_s, request) => {
      const conn = request.wsConnection!
      conn.on('message', d => { if (d.toString() === 'throw') throw new Error('sync boom') })
      conn.on('message', async d => { if (d.toString() === 'reject') throw new Error('async boom') })
      conn.on('message', d => { conn.send(`ok ${d.toString()}`) })
    })
  })
  app.wsManager.on('error', (err, conn) => errors.push([err, conn]))
  const client = await connect(app, '/ws')
  client.send('throw')
  t.equal(await client.next(), 'ok throw', 'the next listener still ran')
  client.send('reject')
  t.equal(await client.next(), 'ok reject')
  await until(() => errors.length === 2)
  t.same(errors.map(([e]) => e.message), ['sync boom', 'async boom'])
  t.ok(errors[0][1]?.id)
  await client.close()
})

test('off() removes a listener; close listeners run once with the info', async (t) => {
  const got: string[] = []
  const closes: DisconnectInfo[] = []
  const app = await buildApp(t, {}, app => {
    app.get('/ws', { websocket: true }, (_s, request) => {
      const conn = request.wsConnection!
      const first = (d: unknown): void => { got.push(`first ${String(d)}`) }
      conn.on('message', first)
      conn.on('message', d => {
        got.push(`second ${d.toString()}`)
        conn.off('message', first)
      })
      conn.on('close', info => closes.push(info))
    })
  })
  const client = await connect(app, '/ws')
  client.send('1')
  client.send('2')
  await until(() => got.length === 3)
  t.same(got, ['first 1', 'second 1', 'second 2'])
  await client.close()
  await until(() => closes.length === 1)
  t.equal(closes[0].disconnectReason, 'client_close')
})

test('1,000 connect/disconnect cycles leave every index empty', async (t) => {
  const app = await buildApp(t, {}, app => {
    app.get('/ws', {
      websocket: true,
      config: { ws: { rooms: ['a', 'b'], identify: (r) => ({ userId: `u${(r.query as { u: string }).u}` }) } }
    }, (_s, request) => { request.wsConnection!.join('c') })
  })
  const m = app.wsManager
  for (let round = 0; round < 10; round++) {
    const clients = await Promise.all(Array.from({ length: 100 }, (_, i) => connect(app, `/ws?u=${i % 7}`)))
    t.equal(m.getConnectionCount(), 100)
    await Promise.all(clients.map(c => c.close()))
  }
  await until(() => m.getConnectionCount() === 0)
  t.same(m.getActiveConnections(), [])
  t.same(m.getActiveUsers(), [])
  t.same(m.getRooms(), [])
  const stats = m.getStats()
  t.equal(stats.connectsTotal, 1000)
  t.equal(stats.disconnectsTotal.client_close, 1000)
  t.match(stats, { connections: 0, users: 0, rooms: 0 })
})

test('MemoryAdapter with a shared bus: instances of one process act as one, without echo', async (t) => {
  const bus = new MemoryBus()
  const build = async (): Promise<FastifyInstance> => {
    const app = Fastify()
    await app.register(wsStabilizer, { adapter: new MemoryAdapter({ bus }) })
    app.get('/ws', { websocket: true, config: { ws: { identify: r => ({ clientId: (r.query as { id: string }).id, userId: 'u' }) } } }, () => {})
    await app.listen({ port: 0, host: '127.0.0.1' })
    return app
  }
  const a = await build()
  const b = await build()
  t.after(async () => { await a.close(); await b.close() })
  t.equal(bus.members.size, 2)
  const onA = await connect(a, '/ws?id=x')
  const onB = await connect(b, '/ws?id=y')
  b.wsManager.join('y', 'room')

  t.equal((await a.wsManager.broadcast('to all')).total, 1, 'the result counts local recipients')
  t.equal(await onA.next(), 'to all')
  t.equal(await onB.next(), 'to all')
  await a.wsManager.broadcast('to room', { room: 'room' })
  t.equal(await onB.next(), 'to room')
  a.wsManager.sendToUser('u', 'to user')
  t.equal(await onA.next(), 'to user')
  t.equal(await onB.next(), 'to user')
  t.equal(a.wsManager.send('y', 'to y'), false, 'not connected here')
  t.equal(await onB.next(), 'to y')
  await a.wsManager.broadcast('not y', { exclude: 'y' })
  t.equal(await onA.next(), 'not y')
  t.ok(await onA.silentFor(30), 'no echo from the bus')
  t.ok(await onB.silentFor(0))
  await onA.close()
  await onB.close()
  await a.close()
  t.equal(bus.members.size, 1, 'a closed adapter leaves the bus')
})
