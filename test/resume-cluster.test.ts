import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import wsStabilizer, { MemoryAdapter, MemoryBus, MemoryResumeStore, type AdapterHealth, type LogEntry, type ResumeStoreOptions, type Session, type WsAdapter } from '../plugin.ts'
import Fastify from 'fastify'
import { buildApp, connect, until, type TestClient } from './helpers.ts'

/*
 * Resume on another instance, with the resume state behind the adapter seam: two apps
 * joined by a MemoryBus share nonces, sessions and copies of each other's replay logs.
 */

interface Welcome { type: 'welcome', clientId: string, token: string, offset: number, resumed: boolean, replayed?: number, resumeFailed?: string }
interface Frame { type: 'message', offset?: number, data: unknown }

const SECRET = 'cluster-resume-secret-0123456789'

async function instance (t: Parameters<typeof buildApp>[0], adapter: WsAdapter, replay = true): Promise<FastifyInstance> {
  return await buildApp(t, { adapter, reconnect: { secret: SECRET } }, app => {
    app.get('/ws', { websocket: true, config: { ws: { reconnect: { replay }, identify: r => ({ userId: (r.query as { user?: string }).user }) } } }, () => {})
  })
}

function dropTcp (client: TestClient): void {
  (client.ws as unknown as { _socket: { destroy (): void } })._socket.destroy()
}

test('a client resumes on another instance: same identity and rooms, exactly the missed messages with that instance\'s offsets', async (t) => {
  const bus = new MemoryBus()
  const a = await instance(t, new MemoryAdapter({ bus }))
  const b = await instance(t, new MemoryAdapter({ bus }))

  const client = await connect(a, '/ws?user=ann')
  const welcome = await client.json<Welcome>()
  a.wsManager.join(welcome.clientId, 'room')
  await a.wsManager.broadcast({ n: 0 }, { room: 'room' })
  const seen = await client.json<Frame>()
  dropTcp(client)
  await until(() => a.wsManager.getConnectionCount() === 0)

  // missed: from the instance it left and from the other one
  await a.wsManager.broadcast({ n: 1 }, { room: 'room' })
  await b.wsManager.broadcast({ n: 2 }, { room: 'room' })
  b.wsManager.sendToUser('ann', { n: 3 })
  await b.wsManager.broadcast({ n: 'other room' }, { room: 'elsewhere' })
  await b.wsManager.broadcast({ n: 'volatile' }, { volatile: true })
  b.wsManager.send(welcome.clientId, { n: 4 })
  await new Promise(resolve => setImmediate(resolve))

  const back = await connect(b, `/ws?user=ann&resume=${welcome.token}&offset=${seen.offset!}`)
  const resumed = await back.json<Welcome>()
  t.match(resumed, { clientId: welcome.clientId, resumed: true, replayed: 4 })
  const replayed: Frame[] = []
  for (let i = 0; i < 4; i++) replayed.push(await back.json<Frame>())
  t.same(replayed.map(f => f.data), [{ n: 1 }, { n: 2 }, { n: 3 }, { n: 4 }], 'in order, each once')
  t.same(replayed.map(f => f.offset), [1, 2, 3, 4].map(i => resumed.offset + i), 'logged again on this instance, after the welcome offset')
  t.same(b.wsManager.getRoomMembers('room'), [welcome.clientId], 'rooms restored on the new instance')

  // a second drop right after the replay: the client comes back to the first instance from the second's offsets
  dropTcp(back)
  await until(() => b.wsManager.getConnectionCount() === 0)
  await a.wsManager.broadcast({ n: 5 }, { room: 'room' })
  await new Promise(resolve => setImmediate(resolve))
  const again = await connect(a, `/ws?user=ann&resume=${resumed.token}&offset=${replayed[1].offset!}`)
  t.match(await again.json<Welcome>(), { resumed: true, replayed: 3 })
  t.same([(await again.json<Frame>()).data, (await again.json<Frame>()).data, (await again.json<Frame>()).data], [{ n: 3 }, { n: 4 }, { n: 5 }])
  t.ok(await again.silentFor(30), 'no duplicates')
  await again.close()
})

test('a token used on one instance is refused on the other', async (t) => {
  const bus = new MemoryBus()
  const a = await instance(t, new MemoryAdapter({ bus }))
  const b = await instance(t, new MemoryAdapter({ bus }))
  const client = await connect(a, '/ws')
  const welcome = await client.json<Welcome>()
  await client.close()
  await until(() => a.wsManager.getConnectionCount() === 0)
  const first = await connect(b, `/ws?resume=${welcome.token}&offset=${welcome.offset}`)
  t.match(await first.json<Welcome>(), { resumed: true })
  const second = await connect(a, `/ws?resume=${welcome.token}&offset=${welcome.offset}`)
  t.match(await second.json<Welcome>(), { resumed: false, resumeFailed: 'invalid' })
  await first.close()
  await second.close()
})

test('a log the store no longer covers is a gap; a route without replay resumes without reading it', async (t) => {
  const bus = new MemoryBus()
  const a = await instance(t, new MemoryAdapter({ bus }))
  const b = await instance(t, new MemoryAdapter({ bus }))
  const client = await connect(a, '/ws')
  const welcome = await client.json<Welcome>()
  await client.close()
  await until(() => a.wsManager.getConnectionCount() === 0)
  const gap = await connect(b, `/ws?resume=${welcome.token}&offset=${welcome.offset + 5}`)
  t.match(await gap.json<Welcome>(), { resumed: false, resumeFailed: 'gap' })
  await gap.close()

  const c = await instance(t, new MemoryAdapter({ bus }), false)
  const d = await instance(t, new MemoryAdapter({ bus }), false)
  const plain = await connect(c, '/ws')
  const w = await plain.json<Welcome>()
  await plain.close()
  await until(() => c.wsManager.getConnectionCount() === 0)
  const back = await connect(d, `/ws?resume=${w.token}`)
  t.match(await back.json<Welcome>(), { resumed: true, clientId: w.clientId })
  t.ok(await back.silentFor(30), 'nothing replayed')
  await back.close()
})

test('a store that fails gives a fresh session (unavailable), logged, and nothing crashes', async (t) => {
  const adapter = new class extends MemoryAdapter {
    override health (): AdapterHealth { return { status: 'down' } }
    override resumeStore (options: ResumeStoreOptions): MemoryResumeStore {
      const store = super.resumeStore(options)
      return Object.assign(Object.create(store) as MemoryResumeStore, {
        claim: (nonce: string, expiresAt: number) => store.claim(nonce, expiresAt),
        saveSession: (session: Session) => store.saveSession(session),
        takeSession: async () => { throw new Error('store down') },
        append: (stream: string, entry: LogEntry) => store.append(stream, entry),
        read: (stream: string) => store.read(stream),
        close: () => store.close()
      })
    }
  }()
  const errors: unknown[] = []
  const app = Fastify()
  await app.register(wsStabilizer, { adapter, reconnect: { secret: SECRET } })
  app.get('/ws', { websocket: true, config: { ws: { reconnect: true } } }, () => {})
  app.wsManager.on('error', err => errors.push(err))
  t.after(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const client = await connect(app, '/ws')
  const welcome = await client.json<Welcome>()
  await client.close()
  const back = await connect(app, `/ws?resume=${welcome.token}`)
  t.match(await back.json<Welcome>(), { resumed: false, resumeFailed: 'unavailable' })
  t.match(errors, [{ message: 'store down' }])
  await back.close()
})

test('MemoryResumeStore: a shared store closes with its last user', async (t) => {
  const options = { instanceId: 'i', replayMessages: 10, replayBytes: 1000, sweepEvery: 1000, retention: 1000 }
  const entry = { offset: 1, id: 's:1', at: Date.now(), target: {}, frame: Buffer.from('x') }
  const store = new MemoryResumeStore(options, true).acquire().acquire()
  store.append('s', entry)
  store.close()
  t.same(store.read('s').map(e => e.offset), [1], 'still open for the other user')
  t.same(store.read('unknown'), [])
  store.close()
  t.same(store.read('s'), [], 'closed and cleared')
  const alone = new MemoryResumeStore(options, false).acquire()
  alone.append('s', entry)
  t.same(alone.read('s'), [], 'a store of its own keeps no copies: its instance reads its own log')
  alone.close()
})

test('resume on another instance fails as a gap when either log lost what the client may have had', async (t) => {
  const bus = new MemoryBus()
  const big = { adapter: new MemoryAdapter({ bus }), reconnect: { secret: SECRET, replayMessages: 100 } }
  const route = (app: FastifyInstance): void => {
    app.get('/ws', { websocket: true, config: { ws: { reconnect: true } } }, () => {})
  }
  const a = await buildApp(t, big, route)
  const small = await buildApp(t, { adapter: new MemoryAdapter({ bus }), reconnect: { secret: SECRET, replayMessages: 2 } }, route)

  // the old log (a's copy) is whole, but this instance's own log evicted entries it would have to add
  const client = await connect(a, '/ws')
  const welcome = await client.json<Welcome>()
  await a.wsManager.broadcast('seen')
  const seen = await client.json<Frame>()
  dropTcp(client)
  await until(() => a.wsManager.getConnectionCount() === 0)
  for (let i = 0; i < 3; i++) await a.wsManager.broadcast(`missed ${i}`)
  await new Promise(resolve => setImmediate(resolve))
  const back = await connect(small, `/ws?resume=${welcome.token}&offset=${seen.offset!}`)
  t.match(await back.json<Welcome>(), { resumed: false, resumeFailed: 'gap' })
  await back.close()

  // the old log (a copy trimmed to 2 entries) lost entries from the client's last moments
  const trimmedBus = new MemoryBus()
  const c = await buildApp(t, { adapter: new MemoryAdapter({ bus: trimmedBus }), reconnect: { secret: SECRET, replayMessages: 2 } }, route)
  const d = await buildApp(t, { adapter: new MemoryAdapter({ bus: trimmedBus }), reconnect: { secret: SECRET, replayMessages: 100 } }, route)
  const other = await connect(c, '/ws')
  const w = await other.json<Welcome>()
  for (let i = 0; i < 4; i++) await c.wsManager.broadcast(`n${i}`)
  let last: Frame | undefined
  for (let i = 0; i < 4; i++) last = await other.json<Frame>()
  dropTcp(other)
  await until(() => c.wsManager.getConnectionCount() === 0)
  const there = await connect(d, `/ws?resume=${w.token}&offset=${last!.offset!}`)
  t.match(await there.json<Welcome>(), { resumed: false, resumeFailed: 'gap' }, 'd could add again what the copy no longer shows: refuse rather than risk a duplicate')
  await there.close()
})

test('an instance with no replaying route (a publisher) gives its messages ids: a client resuming across two instances that logged one gets it once', async (t) => {
  const bus = new MemoryBus()
  const a = await instance(t, new MemoryAdapter({ bus }))
  const b = await instance(t, new MemoryAdapter({ bus }))
  const publisher = await buildApp(t, { adapter: new MemoryAdapter({ bus }), reconnect: { secret: SECRET } })
  const client = await connect(a, '/ws?user=ann')
  const welcome = await client.json<Welcome>()
  a.wsManager.join(welcome.clientId, 'room')
  await a.wsManager.broadcast({ n: 0 }, { room: 'room' })
  const seen = await client.json<Frame>()
  dropTcp(client)
  await until(() => a.wsManager.getConnectionCount() === 0)
  await publisher.wsManager.broadcast({ from: 'publisher' })
  publisher.wsManager.sendToUser('ann', { to: 'ann' })
  await new Promise(resolve => setImmediate(resolve))
  await new Promise(resolve => setImmediate(resolve))
  const back = await connect(b, `/ws?user=ann&resume=${welcome.token}&offset=${seen.offset!}`)
  const resumed = await back.json<Welcome>()
  t.match(resumed, { resumed: true, replayed: 2 }, 'two missed messages, not four')
  t.same([(await back.json<Frame>()).data, (await back.json<Frame>()).data], [{ from: 'publisher' }, { to: 'ann' }])
  await back.close()
})
