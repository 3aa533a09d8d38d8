import { test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import wsStabilizer, { MemoryAdapter, MemoryBus, type BroadcastResult, type DisconnectInfo } from '../plugin.ts'
import { buildApp, connect, open, roomApp, until } from './helpers.ts'

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
