import type { FastifyInstance } from 'fastify'
import type { Test } from 'tap'
import type { WsAdapter } from '../plugin.ts'
import { buildApp, connect, until, type TestClient } from './helpers.ts'

/*
 * What every adapter must do, run against the in-memory adapter (joined by a MemoryBus)
 * and the Redis adapter: several Fastify instances acting as one.
 */

interface Welcome { type: 'welcome', clientId: string, token: string, offset: number, resumed: boolean, replayed?: number, resumeFailed?: string }
interface Frame { type: 'message', offset?: number, data: unknown }

const SECRET = 'adapter-contract-secret-01234567'

type Tap = Test

async function instance (t: Tap, adapter: WsAdapter): Promise<FastifyInstance> {
  return await buildApp(t, { adapter, reconnect: { secret: SECRET } }, app => {
    app.get('/ws', { websocket: true, config: { ws: { identify: r => ({ userId: (r.query as { user?: string }).user }) } } }, () => {})
    app.get('/resume', { websocket: true, config: { ws: { reconnect: true, identify: r => ({ userId: (r.query as { user?: string }).user }) } } }, () => {})
  })
}

/**
 * What each client got: once `expected` messages have come in all (a busy machine may take
 * a while to pass them between instances), and `settleMs` more, for any extra copy to show.
 */
async function inbox (clients: TestClient[], expected: number, settleMs = 50): Promise<string[][]> {
  await until(() => clients.reduce((sum, c) => sum + c.pending, 0) >= expected, 3000, `${expected} messages`)
  await new Promise(resolve => setTimeout(resolve, settleMs))
  return clients.map(c => c.drain().map(m => m.data.toString()))
}

function dropTcp (client: TestClient): void {
  (client.ws as unknown as { _socket: { destroy (): void } })._socket.destroy()
}

/** `makeAdapters(n)` gives n adapters joined to one another (a bus, or one Redis). */
export function adapterContract (t: Tap, makeAdapters: (n: number) => WsAdapter[] | Promise<WsAdapter[]>): void {
  t.test('broadcast, room, user and client delivery reach every instance, exactly once', async (t) => {
    const [a, b, c] = await Promise.all((await makeAdapters(3)).map(async adapter => await instance(t, adapter)))
    const a1 = await connect(a, '/ws?user=u1')
    const b1 = await connect(b, '/ws?user=u1')
    const b2 = await connect(b, '/ws?user=u2')
    const c1 = await connect(c, '/ws?user=u3')
    const all = [a1, b1, b2, c1]
    const idOf = (app: FastifyInstance, user: string): string => app.wsManager.getUserConnections(user)[0].id
    const ids = [idOf(a, 'u1'), idOf(b, 'u1'), idOf(b, 'u2'), idOf(c, 'u3')]
    b.wsManager.join(ids[2], 'room')
    c.wsManager.join(ids[3], 'room')

    const result = await a.wsManager.broadcast('everyone')
    t.equal(result.total, 1, 'the result counts this instance\'s deliveries')
    t.same(await inbox(all, 4), [['everyone'], ['everyone'], ['everyone'], ['everyone']])

    await a.wsManager.broadcast('room', { room: 'room' })
    t.same(await inbox(all, 2), [[], [], ['room'], ['room']])

    await c.wsManager.broadcast('not u3', { exclude: ids[3] })
    t.same(await inbox(all, 3), [['not u3'], ['not u3'], ['not u3'], []])

    c.wsManager.sendToUser('u1', { to: 'u1' })
    t.same(await inbox(all, 2), [['{"to":"u1"}'], ['{"to":"u1"}'], [], []])

    t.equal(a.wsManager.send(ids[3], Buffer.from([1, 2])), false, 'not local: handed on')
    const [, , , [binary]] = await inbox(all, 1)
    t.same(binary, '\u0001\u0002')

    t.equal(a.wsManager.disconnect(ids[2], 4000, 'bye'), false)
    t.match(await b2.closed, { code: 4000, reason: 'bye' })
    for (const client of all) await client.close()
  })

  t.test('a token used on one instance is refused on another; resume on another instance replays what was missed', async (t) => {
    const [a, b] = await Promise.all((await makeAdapters(2)).map(async adapter => await instance(t, adapter)))
    const client = await connect(a, '/resume?user=ann')
    const welcome = await client.json<Welcome>()
    a.wsManager.join(welcome.clientId, 'news')
    await a.wsManager.broadcast({ n: 0 }, { room: 'news' })
    const seen = await client.json<Frame>()
    dropTcp(client)
    await until(() => a.wsManager.getConnectionCount() === 0)

    await a.wsManager.broadcast({ n: 1 }, { room: 'news' })
    await b.wsManager.broadcast({ n: 2 }, { room: 'news' })
    await b.wsManager.broadcast({ n: 'elsewhere' }, { room: 'sports' })
    b.wsManager.sendToUser('ann', { n: 3 })
    await new Promise(resolve => setTimeout(resolve, 50))

    const back = await connect(b, `/resume?user=ann&resume=${welcome.token}&offset=${seen.offset!}`)
    const resumed = await back.json<Welcome>()
    t.match(resumed, { clientId: welcome.clientId, resumed: true, replayed: 3 })
    const replayed = [await back.json<Frame>(), await back.json<Frame>(), await back.json<Frame>()]
    t.same(replayed.map(f => f.data), [{ n: 1 }, { n: 2 }, { n: 3 }])
    t.same(b.wsManager.getRoomMembers('news'), [welcome.clientId])
    t.ok(await back.silentFor(30), 'no duplicates')

    const again = await connect(a, `/resume?user=ann&resume=${welcome.token}&offset=0`)
    t.match(await again.json<Welcome>(), { resumed: false, resumeFailed: 'invalid' }, 'the token was used on the other instance')
    await again.close()
    await back.close()
  })

  t.test('a resume never heard from gives its token back on every instance, paired with its welcome\'s', async (t) => {
    const [a, b] = await Promise.all((await makeAdapters(2)).map(async adapter => await instance(t, adapter)))
    const first = await connect(a, '/resume?user=bo')
    const w0 = await first.json<Welcome>()
    dropTcp(first)
    await until(() => a.wsManager.getConnectionCount() === 0)

    // resumed on b, but the client is gone before it says anything: its welcome may be lost
    const unheard = await connect(b, `/resume?user=bo&resume=${w0.token}&offset=${w0.offset}`)
    const w1 = await unheard.json<Welcome>()
    t.match(w1, { resumed: true })
    dropTcp(unheard)
    await until(() => b.wsManager.getConnectionCount() === 0)
    await new Promise(resolve => setTimeout(resolve, 50))

    const again = await connect(a, `/resume?user=bo&resume=${w0.token}&offset=${w0.offset}`)
    t.match(await again.json<Welcome>(), { clientId: w0.clientId, resumed: true }, 'the used token works once more, on the other instance')
    await again.close()
    const late = await connect(b, `/resume?user=bo&resume=${w1.token}&offset=${w0.offset}`)
    t.match(await late.json<Welcome>(), { resumed: false, resumeFailed: 'invalid' }, 'the lost welcome\'s token was spent with it')
    await late.close()
  })

  t.test('cluster-wide state: counts, users, rooms, per-user limit across instances', async (t) => {
    const [adapterA, adapterB] = await makeAdapters(2)
    const a = await buildApp(t, { adapter: adapterA, limits: { maxConnectionsPerUser: 2 } }, app => {
      app.get('/ws', { websocket: true, config: { ws: { identify: r => ({ userId: (r.query as { user?: string }).user }) } } }, () => {})
    })
    const b = await buildApp(t, { adapter: adapterB, limits: { maxConnectionsPerUser: 2 } }, app => {
      app.get('/ws', { websocket: true, config: { ws: { identify: r => ({ userId: (r.query as { user?: string }).user }) } } }, () => {})
    })
    const clients = [await connect(a, '/ws?user=ann'), await connect(b, '/ws?user=ann'), await connect(b, '/ws?user=bob'), await connect(a, '/ws')]
    const annOnB = b.wsManager.getUserConnections('ann')[0].id
    b.wsManager.join(annOnB, 'lobby')
    // dev: ann and an anonymous connection on a, bob on b
    for (const conn of a.wsManager.connections()) a.wsManager.join(conn.id, 'dev')
    b.wsManager.join(b.wsManager.getUserConnections('bob')[0].id, 'dev')
    await new Promise(resolve => setTimeout(resolve, 30))

    for (const app of [a, b]) {
      t.equal(await app.wsManager.cluster.getConnectionCount(), 4)
      t.same((await app.wsManager.cluster.getActiveUsers()).sort(), ['ann', 'bob'])
      t.equal(await app.wsManager.cluster.getUserCount(), 2)
      t.equal(await app.wsManager.cluster.isUserConnected('bob'), true)
      t.equal(await app.wsManager.cluster.isUserConnected('carol'), false)
      t.same(await app.wsManager.cluster.getRoomMembers('lobby'), [annOnB])
      t.same(await app.wsManager.cluster.getRoomUsers('lobby'), ['ann'])
      t.same((await app.wsManager.cluster.getRoomUsers('dev')).sort(), ['ann', 'bob'], 'users, not connections: the anonymous one is not counted')
      t.equal((await app.wsManager.cluster.getRoomMembers('dev')).length, 3)
    }
    t.equal(a.wsManager.isUserConnected('bob'), false, 'the plain getters answer for this instance')

    const third = await connect(a, '/ws?user=ann')
    t.equal((await third.closed).code, 4409, 'ann has two connections already, one on each instance')

    await clients[1].close()
    await until(() => b.wsManager.getConnectionCount() === 1)
    await new Promise(resolve => setTimeout(resolve, 30))
    t.equal(await a.wsManager.cluster.getUserConnectionCount('ann'), 1)
    t.same(await a.wsManager.cluster.getRoomMembers('lobby'), [])
    const again = await connect(a, '/ws?user=ann')
    t.ok(await again.silentFor(50), 'room again once one is gone')
    t.equal(again.ws.readyState, 1)
    for (const client of [...clients, again]) await client.close()
  })

  t.test('cluster operations: exact counts over every instance, and a client acted on wherever it is', async (t) => {
    const apps = await Promise.all((await makeAdapters(3)).map(async adapter => await instance(t, adapter)))
    const [a, b, c] = apps
    for (const app of apps) await until(async () => (await app.wsManager.adapter.presence.remoteInstances()).length === 2, 2000, 'every instance sees the two others')
    const a1 = await connect(a, '/ws?user=u1')
    const b1 = await connect(b, '/ws?user=u1')
    const b2 = await connect(b, '/ws?user=u2')
    const c1 = await connect(c, '/ws?user=u3')
    const all = [a1, b1, b2, c1]
    const idOf = (app: FastifyInstance, user: string): string => app.wsManager.getUserConnections(user)[0].id
    const ids = [idOf(a, 'u1'), idOf(b, 'u1'), idOf(b, 'u2'), idOf(c, 'u3')]
    b.wsManager.join(ids[2], 'room')
    c.wsManager.join(ids[3], 'room')

    t.same(await a.wsManager.cluster.broadcast('everyone'), { instances: 3, answered: 3, total: 4, succeeded: 4, failed: 0, partial: false })
    t.same(await inbox(all, 4), [['everyone'], ['everyone'], ['everyone'], ['everyone']])
    t.match(await b.wsManager.cluster.broadcast('room', { room: 'room' }), { instances: 3, answered: 3, total: 2, succeeded: 2, partial: false })
    t.same(await inbox(all, 2), [[], [], ['room'], ['room']])
    t.match(await c.wsManager.cluster.broadcast('not u3', { exclude: ids[3] }), { total: 3, succeeded: 3 })
    t.same(await inbox(all, 3), [['not u3'], ['not u3'], ['not u3'], []])
    t.match(await a.wsManager.cluster.broadcast('room, not u2', { room: ['room', 'none'], exclude: [ids[2], ids[2]] }), { total: 1, succeeded: 1 })
    t.same(await inbox(all, 1), [[], [], [], ['room, not u2']])
    t.match(await a.wsManager.cluster.broadcast('nobody', { room: 'empty' }), { instances: 3, answered: 3, total: 0, partial: false })

    t.equal(await a.wsManager.cluster.send(ids[3], { to: 'u3' }), true, 'on another instance')
    t.equal(await a.wsManager.cluster.send(ids[0], Buffer.from([1, 2])), true, 'here')
    t.equal(await b.wsManager.cluster.send('nobody', 'lost'), false, 'no instance has it')
    t.same(await inbox(all, 2), [['\u0001\u0002'], [], [], ['{"to":"u3"}']])

    t.equal(await a.wsManager.cluster.join(ids[3], 'new'), true)
    t.same(c.wsManager.getRoomMembers('new'), [ids[3]], 'joined on its own instance')
    t.equal(await a.wsManager.cluster.join(ids[0], 'new'), true, 'and here')
    t.match(await b.wsManager.cluster.broadcast('new', { room: 'new' }), { total: 2 })
    t.same(await inbox(all, 2), [['new'], [], [], ['new']])
    t.equal(await b.wsManager.cluster.leave(ids[3], 'new'), true)
    t.equal(await b.wsManager.cluster.leave(ids[3], 'new'), true, 'found, even when it was not a member')
    t.same(c.wsManager.getRoomMembers('new'), [])
    t.equal(await a.wsManager.cluster.leave(ids[0], 'new'), true)
    t.equal(await a.wsManager.cluster.join('nobody', 'new'), false)
    t.equal(await a.wsManager.cluster.leave('nobody', 'new'), false)
    await t.rejects(a.wsManager.cluster.join(ids[3], ''), { code: 'FST_WS_ERROR' }, 'a room name is checked before anything is asked')

    t.equal(await a.wsManager.cluster.disconnect(ids[2], 4000, 'bye'), true)
    t.match(await b2.closed, { code: 4000, reason: 'bye' })
    t.equal(await c.wsManager.cluster.disconnect(ids[1]), true)
    t.match(await b1.closed, { code: 1000 })
    t.equal(await a.wsManager.cluster.disconnect(ids[0], 4001), true, 'here')
    t.match(await a1.closed, { code: 4001 })
    t.equal(await a.wsManager.cluster.disconnect('nobody'), false)
    t.match(await a.wsManager.cluster.broadcast('last'), { instances: 3, answered: 3, total: 1 })
    t.same(await inbox([c1], 1), [['last']])
    await c1.close()
  })

  t.test('cluster operations reach the replay logs: a client away gets them when it resumes on another instance', async (t) => {
    const apps = await Promise.all((await makeAdapters(2)).map(async adapter => await instance(t, adapter)))
    const [a, b] = apps
    for (const app of apps) await until(async () => (await app.wsManager.adapter.presence.remoteInstances()).length === 1, 2000, 'each instance sees the other')
    const client = await connect(b, '/resume?user=ann')
    const welcome = await client.json<Welcome>()
    t.equal(await a.wsManager.cluster.join(welcome.clientId, 'news'), true)
    t.match(await a.wsManager.cluster.broadcast({ n: 0 }, { room: 'news' }), { total: 1 })
    const seen = await client.json<Frame>()
    dropTcp(client)
    await until(() => b.wsManager.getConnectionCount() === 0)

    t.match(await a.wsManager.cluster.broadcast({ n: 1 }, { room: 'news' }), { instances: 2, answered: 2, total: 0, partial: false })
    t.equal(await a.wsManager.cluster.send(welcome.clientId, { n: 2 }), false, 'away: not delivered now')
    t.equal(await b.wsManager.cluster.send(welcome.clientId, { n: 3 }), false)
    t.match(await b.wsManager.cluster.broadcast({ n: 'volatile' }, { room: 'news', volatile: true }), { total: 0 })
    await new Promise(resolve => setTimeout(resolve, 50))

    const back = await connect(a, `/resume?user=ann&resume=${welcome.token}&offset=${seen.offset!}`)
    t.match(await back.json<Welcome>(), { clientId: welcome.clientId, resumed: true, replayed: 3 })
    const replayed = [await back.json<Frame>(), await back.json<Frame>(), await back.json<Frame>()]
    t.same(replayed.map(f => f.data), [{ n: 1 }, { n: 2 }, { n: 3 }])
    t.ok(await back.silentFor(30), 'no duplicates, nothing volatile')
    await back.close()
  })

  t.test('health says up', async (t) => {
    const [adapter] = await makeAdapters(1)
    const app = await instance(t, adapter)
    t.match(app.wsManager.health(), { status: 'ok', adapter: { status: 'up' } })
  })
}
