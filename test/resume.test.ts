import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import type { WsStabilizerOptions } from '../plugin.ts'
import { buildApp, connect, until, type TestClient } from './helpers.ts'

interface Welcome { type: 'welcome', v: number, clientId: string, token: string, offset: number, resumed: boolean, replayed?: number, resumeFailed?: string }
interface Frame { type: 'message', offset?: number, data: unknown, binary?: boolean }

const SECRET = 'resume-tests-secret-0123456789ab'

async function resumeApp (t: Parameters<typeof buildApp>[0], options: WsStabilizerOptions = {}, reconnect: unknown = true): Promise<FastifyInstance> {
  return await buildApp(t, { reconnect: { secret: SECRET }, ...options }, app => {
    app.get('/ws', {
      websocket: true,
      config: { ws: { reconnect: reconnect as true, identify: r => ({ userId: (r.query as { user?: string }).user, metadata: { plan: 'pro' } }) } }
    }, () => {})
    app.get('/plain', { websocket: true }, () => {})
  })
}

/** Drops the TCP connection abruptly: no close frame, as a lost network would. */
function dropTcp (client: TestClient): void {
  (client.ws as unknown as { _socket: { destroy (): void } })._socket.destroy()
}

test('connect, join rooms, drop the TCP connection, miss messages, resume: exactly the missed ones, then live', async (t) => {
  const app = await resumeApp(t)
  const m = app.wsManager
  const alice = await connect(app, '/ws?user=alice')
  const welcome = await alice.json<Welcome>()
  t.match(welcome, { type: 'welcome', v: 1, resumed: false, offset: 0 })
  const id = welcome.clientId
  m.join(id, 'news')
  m.join(id, 'sports')
  await m.broadcast({ n: 'seen' }, { room: 'news' })
  const seen = await alice.json<Frame>()
  t.same(seen, { type: 'message', offset: 1, data: { n: 'seen' } })

  dropTcp(alice)
  await until(() => m.getConnectionCount() === 0)

  const other = await connect(app, '/plain')
  await m.broadcast({ n: 1 }, { room: 'news' })
  await m.broadcast('to all')
  await m.broadcast({ n: 'not for alice' }, { room: 'cooking' })
  m.send(id, { n: 'direct' })
  m.sendToUser('alice', { n: 'to the user' })
  m.sendToUser('bob', { n: 'to bob' })
  await m.broadcast({ n: 'volatile' }, { volatile: true })
  await m.broadcast({ n: 'excluded' }, { exclude: id })
  await m.broadcast(Buffer.from([1, 2, 3]), { room: 'sports' })
  t.equal(await other.next(), 'to all', 'plain routes get plain messages, not envelopes')

  const back = await connect(app, `/ws?user=alice&resume=${welcome.token}&offset=${seen.offset!}`)
  const resumed = await back.json<Welcome>()
  t.match(resumed, { type: 'welcome', clientId: id, resumed: true, replayed: 5 })
  t.not(resumed.token, welcome.token, 'the token is rotated')
  const replayed: Frame[] = []
  for (let i = 0; i < 5; i++) replayed.push(await back.json<Frame>())
  t.same(replayed.map(f => f.data), [{ n: 1 }, 'to all', { n: 'direct' }, { n: 'to the user' }, Buffer.from([1, 2, 3]).toString('base64')])
  t.equal(replayed[4].binary, true)
  const offsets = replayed.map(f => f.offset!)
  t.same(offsets, [...offsets].sort((a, b) => a - b), 'in order')
  t.ok(offsets.every(o => o > seen.offset!), 'nothing already seen')
  t.equal(resumed.offset, seen.offset, 'a resumed welcome keeps the client where it was: the replayed offsets move it on, so a drop during the replay loses nothing')

  const conn = m.getConnection(id)!
  t.same([...conn.rooms].sort(), ['news', 'sports'], 'rooms restored')
  t.same(conn.metadata, { plan: 'pro' })
  t.equal(conn.userId, 'alice')

  await m.broadcast({ n: 'live' }, { room: 'news' })
  t.same(await back.json<Frame>(), { type: 'message', offset: 10, data: { n: 'live' } })
  t.ok(await back.silentFor(30), 'no duplicates')
  await back.close()
  await other.close()
})

test('the zero-message case: resume with the offset of the welcome', async (t) => {
  const app = await resumeApp(t)
  const a = await connect(app, '/ws')
  const welcome = await a.json<Welcome>()
  dropTcp(a)
  await until(() => app.wsManager.getConnectionCount() === 0)
  await app.wsManager.broadcast('missed')
  const b = await connect(app, `/ws?resume=${welcome.token}&offset=${welcome.offset}`)
  t.match(await b.json<Welcome>(), { resumed: true, replayed: 1, clientId: welcome.clientId })
  t.match(await b.json<Frame>(), { data: 'missed' })
  await b.close()
})

test('a resume while the old socket is still half-open replaces it and keeps its rooms', async (t) => {
  const app = await resumeApp(t)
  const old = await connect(app, '/ws', { autoPong: false })
  const welcome = await old.json<Welcome>()
  app.wsManager.join(welcome.clientId, 'r')
  const fresh = await connect(app, `/ws?resume=${welcome.token}&offset=0`)
  t.match(await fresh.json<Welcome>(), { resumed: true, replayed: 0, clientId: welcome.clientId })
  t.equal((await old.closed).code, 4001)
  t.same(app.wsManager.getRoomMembers('r'), [welcome.clientId])
  t.equal(app.wsManager.getConnectionCount(), 1)
  await fresh.close()
})

test('failures are explicit and give a fresh session: invalid, used, expired, unknown session, gap', async (t) => {
  const app = await resumeApp(t, { reconnect: { secret: SECRET, tokenTtl: 300, maxDisconnect: 60_000, replayMessages: 3 } })
  const m = app.wsManager
  const fail = async (query: string): Promise<Welcome> => {
    const c = await connect(app, `/ws?${query}`)
    const w = await c.json<Welcome>()
    await c.close()
    return w
  }
  t.match(await fail('resume=garbage&offset=0'), { resumed: false, resumeFailed: 'invalid' })
  t.match(await fail('resume=x.y&offset=nope'), { resumeFailed: 'invalid' })

  const a = await connect(app, '/ws')
  const wa = await a.json<Welcome>()
  await a.close()
  await until(() => m.getConnectionCount() === 0)
  const ok = await fail(`resume=${wa.token}&offset=0`)
  t.match(ok, { resumed: true })
  t.match(await fail(`resume=${wa.token}&offset=0`), { resumed: false, resumeFailed: 'invalid' }, 'a token works once')

  t.match(await fail(`resume=${m.generateReconnectToken('never-connected')}&offset=0`), { resumeFailed: 'unknown_session' })

  const b = await connect(app, '/ws')
  const wb = await b.json<Welcome>()
  dropTcp(b)
  await until(() => m.getConnectionCount() === 0)
  for (let i = 0; i < 5; i++) await m.broadcast(`flood ${i}`)
  const gap = await fail(`resume=${wb.token}&offset=${wb.offset}`)
  t.match(gap, { resumed: false, resumeFailed: 'gap' }, 'the log no longer covers the absence')
  t.not(gap.clientId, wb.clientId, 'a fresh session')

  const c = await connect(app, '/ws')
  const wc = await c.json<Welcome>()
  await c.close()
  t.match(await fail(`resume=${wc.token}&offset=${wc.offset + 100}`), { resumeFailed: 'gap' }, 'an offset from the future cannot be trusted')

  const d = await connect(app, '/ws')
  const wd = await d.json<Welcome>()
  await d.close()
  await new Promise(resolve => setTimeout(resolve, 320))
  t.match(await fail(`resume=${wd.token}&offset=0`), { resumeFailed: 'expired' })
})

test('too long away: the session is gone', async (t) => {
  const app = await resumeApp(t, {}, { maxDisconnect: 30 })
  const a = await connect(app, '/ws')
  const w = await a.json<Welcome>()
  await a.close()
  await new Promise(resolve => setTimeout(resolve, 60))
  const b = await connect(app, `/ws?resume=${w.token}&offset=0`)
  t.match(await b.json<Welcome>(), { resumed: false, resumeFailed: 'unknown_session' })
  await b.close()
})

test('a resume may not change the user', async (t) => {
  const app = await resumeApp(t)
  const a = await connect(app, '/ws?user=alice')
  const w = await a.json<Welcome>()
  await a.close()
  await until(() => app.wsManager.getConnectionCount() === 0)
  const b = await connect(app, `/ws?user=mallory&resume=${w.token}&offset=0`)
  t.match(await b.json<Welcome>(), { resumed: false, resumeFailed: 'invalid' })
  t.equal([...app.wsManager.connections()][0].userId, 'mallory')
  await b.close()
})

test('reconnect without replay: the session comes back, messages carry no offset, nothing is replayed', async (t) => {
  const app = await resumeApp(t, {}, { replay: false })
  const a = await connect(app, '/ws', { headers: {} })
  const w = await a.json<Welcome>()
  app.wsManager.join(w.clientId, 'r')
  app.wsManager.send(w.clientId, 'hi', { volatile: false })
  t.same(await a.json<Frame>(), { type: 'message', data: 'hi' })
  dropTcp(a)
  await until(() => app.wsManager.getConnectionCount() === 0)
  await app.wsManager.broadcast('missed', { room: 'r' })
  const b = await connect(app, '/ws', { headers: { 'x-ws-resume': w.token, 'x-ws-offset': '0' } })
  const resumed = await b.json<Welcome>()
  t.match(resumed, { resumed: true, clientId: w.clientId })
  t.equal(resumed.replayed, undefined)
  t.ok(await b.silentFor(30))
  t.same(app.wsManager.getRoomMembers('r'), [w.clientId])
  await b.close()
})

test('a replaced connection leaves no session behind; conn.send is logged for replay too', async (t) => {
  const app = await resumeApp(t)
  const a = await connect(app, '/ws')
  const w = await a.json<Welcome>()
  const conn = app.wsManager.getConnection(w.clientId)!
  t.ok(conn.send({ direct: true }))
  t.match(await a.json<Frame>(), { offset: 1, data: { direct: true } })
  t.ok(conn.send('quiet', { volatile: true }))
  t.same(await a.json<Frame>(), { type: 'message', data: 'quiet' })
  await a.close()
})

test('without an offset a resume replays everything the log holds for the client', async (t) => {
  const app = await resumeApp(t)
  const a = await connect(app, '/ws')
  const w = await a.json<Welcome>()
  await app.wsManager.broadcast('one')
  await a.json()
  dropTcp(a)
  await until(() => app.wsManager.getConnectionCount() === 0)
  const b = await connect(app, `/ws?resume=${w.token}`)
  t.match(await b.json<Welcome>(), { resumed: true, replayed: 1 })
  t.match(await b.json<Frame>(), { offset: 1, data: 'one' })
  await b.close()
})

test('ReplayLog: bounded by count and bytes, compacts, tells a gap from an empty answer', async (t) => {
  const { ReplayLog } = await import('../lib/resume/replay-log.ts')
  const log = new ReplayLog(2000, 1_000_000)
  for (let i = 0; i < 5000; i++) { const offset = log.next(); log.append({ offset, id: String(offset), at: offset, target: {}, frame: Buffer.from('x') }) }
  t.equal(log.size, 2000)
  t.equal(log.offset, 5000)
  t.equal(log.after(2999), undefined, 'offset 3000 was evicted')
  t.equal(log.after(3000)!.length, 2000)
  t.same(log.after(4998)!.map(e => e.offset), [4999, 5000], 'after compaction the offsets still line up')
  t.same(log.after(5000), [])
  const small = new ReplayLog(100, 10)
  for (let i = 0; i < 5; i++) { const offset = small.next(); small.append({ offset, id: String(offset), at: offset, target: {}, frame: Buffer.from('12345') }) }
  t.equal(small.size, 2, 'bytes bound')
  const empty = new ReplayLog(10, 10)
  t.same(empty.after(0), [])
})

test('SessionStore: expired sessions are swept and never taken', async (t) => {
  const { SessionStore } = await import('../lib/resume/sessions.ts')
  const store = new SessionStore(10, 60_000)
  t.teardown(() => store.close())
  const now = Date.now()
  store.save({ clientId: 'old', userId: undefined, metadata: {}, rooms: [], stream: 's', connectedAt: 0, expiresAt: now + 15 })
  store.save({ clientId: 'new', userId: undefined, metadata: {}, rooms: [], stream: 's', connectedAt: 0, expiresAt: now + 60_000 })
  t.equal(store.size, 2)
  await new Promise(resolve => setTimeout(resolve, 50))
  t.equal(store.size, 1, 'the timer swept the expired one')
  t.equal(store.take('old', Date.now()), undefined)
  store.save({ clientId: 'stale', userId: undefined, metadata: {}, rooms: [], stream: 's', connectedAt: 0, expiresAt: now })
  t.equal(store.take('stale', now + 1), undefined, 'expired but not yet swept: still not taken')
  t.equal(store.take('new', Date.now())?.clientId, 'new')
  t.equal(store.size, 1, 'the taken one left its fence')
  t.equal(store.take('new', Date.now()), undefined, 'a fence is never taken')
})

test('a token made for a client while it was away carries no user: it cannot resume a user\'s session', async (t) => {
  const app = await resumeApp(t)
  const a = await connect(app, '/ws?user=ann')
  const w = await a.json<Welcome>()
  await a.close()
  await until(() => app.wsManager.getConnectionCount() === 0)
  const token = app.wsManager.generateReconnectToken(w.clientId)
  const b = await connect(app, `/ws?resume=${token}&offset=${w.offset}`)
  t.match(await b.json<Welcome>(), { resumed: false, resumeFailed: 'invalid' })
  await b.close()
})
