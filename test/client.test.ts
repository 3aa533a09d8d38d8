import { test } from 'tap'
import WebSocket, { WebSocketServer } from 'ws'
import { createServer, type Server } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { StabilizerClient, ClientError, backoffCap, backoffDelay, DEFAULT_BACKOFF, type ClientOptions, type SocketConstructor } from '../lib/client/index.ts'
import { buildApp, until } from './helpers.ts'

const WS = WebSocket as unknown as SocketConstructor
const SECRET = 'client-tests-secret-0123456789ab'

type Tap = Parameters<typeof buildApp>[0] & { teardown (fn: () => unknown): void }

async function server (t: Tap, heartbeat = { mode: 'message' as const, interval: 30, timeout: 2000 }, maxDisconnect = 60_000): Promise<FastifyInstance> {
  return await buildApp(t, { heartbeat, reconnect: { secret: SECRET } }, app => {
    app.get('/ws', { websocket: true, config: { ws: { reconnect: { maxDisconnect }, identify: r => ({ userId: (r.query as { user?: string }).user }) } } }, (_socket, request) => {
      const conn = request.wsConnection!
      conn.on('message', (data, isBinary) => {
        const text = data.toString()
        if (!isBinary && text === 'echo-me') conn.send('echo')
        app.wsManager.emit('got' as 'connect', text as never)
      })
    })
    app.get('/plain', { websocket: true }, (socket) => {
      socket.send('plain hello')
      socket.send(Buffer.from([7, 8]))
      socket.send('{"type":"pong","as":"data"}')
      socket.send('{"type":broken')
      socket.send('{"type":"other"}')
      socket.send('{"type":"ping","ts":1}')
      socket.send('{"type":"pong","ts":2}')
      socket.send('after')
    })
    app.get('/no-replay', { websocket: true, config: { ws: { reconnect: { replay: false } } } }, () => {})
  })
}

function urlOf (app: FastifyInstance, path: string): string {
  return `ws://127.0.0.1:${(app.server.address() as { port: number }).port}${path}`
}

function client<In = unknown> (t: Tap, url: string, options: ClientOptions = {}): StabilizerClient<In> {
  const c = new StabilizerClient<In>(url, { WebSocket: WS, ...options })
  t.teardown(() => c.close())
  return c
}

/** The server side of a client: its ws socket, dropped without a close frame. */
function dropAll (app: FastifyInstance): void {
  for (const conn of app.wsManager.connections()) (conn.socket as unknown as { _socket: { destroy (): void } })._socket.destroy()
}

function received (app: FastifyInstance): string[] {
  const seen: string[] = []
  app.wsManager.on('got' as 'connect', ((text: string) => seen.push(text)) as never)
  return seen
}

test('backoff: full jitter under a cap that grows by the multiplier up to maxDelay; 1013 waits longer', async (t) => {
  const options = { ...DEFAULT_BACKOFF, initialDelay: 100, maxDelay: 1000, multiplier: 2 }
  t.same([0, 1, 2, 3, 4, 5].map(a => backoffCap(options, a)), [100, 200, 400, 800, 1000, 1000])
  t.same([0, 1, 2].map(a => backoffDelay(options, a, () => 0.5)), [50, 100, 200])
  t.equal(backoffCap(options, 0, true), 400, 'try again later: four times the cap')
  for (let i = 0; i < 1000; i++) {
    const d = backoffDelay(options, 2, Math.random)
    if (d < 0 || d >= 400) t.fail(`delay ${d} out of [0, 400)`)
  }
  t.equal(backoffDelay(options, 9, () => 0.999999), 999)
})

test('connect, send text, binary and JSON, receive by events and by async iteration, close', async (t) => {
  const app = await server(t)
  const seen = received(app)
  const c = client<unknown>(t, urlOf(app, '/ws?user=ann'))
  const welcomes: unknown[] = []
  c.on('welcome', w => welcomes.push(w))
  t.equal(c.state, 'idle')
  t.throws(() => c.send('too early'), { code: 'WS_CLIENT_CLOSED' })
  await c.connect()
  await c.connect()
  t.equal(c.state, 'open')
  await until(() => c.clientId !== undefined)
  t.match(welcomes, [{ type: 'welcome', resumed: false }])
  const iterator = c[Symbol.asyncIterator]()
  const messages: unknown[] = []
  c.on('message', m => messages.push(m))
  c.send('echo-me')
  c.send(new Uint8Array([1, 2, 3]))
  c.send({ json: true })
  await until(() => seen.length === 3)
  t.same(seen, ['echo-me', '\u0001\u0002\u0003', '{"json":true}'])
  t.same(await iterator.next(), { value: 'echo', done: false }, 'the envelope is unwrapped')
  const waiting = iterator.next()
  await app.wsManager.broadcast({ n: 1 })
  await app.wsManager.broadcast(Buffer.from([9, 9]))
  t.same(await waiting, { value: { n: 1 }, done: false }, 'an iterator that waits gets it')
  t.same((await iterator.next()).value, new Uint8Array([9, 9]), 'binary arrives as bytes')
  t.same(messages, ['echo', { n: 1 }, new Uint8Array([9, 9])])
  t.ok(c.offset > 0, 'the last offset is kept')
  await iterator.return!()

  const closed = new Promise(resolve => app.wsManager.once('disconnect', (_conn, info) => resolve(info)))
  const done: unknown[] = []
  c.on('close', info => done.push(info))
  const after = c[Symbol.asyncIterator]()
  c.close(4321, 'bye now')
  t.match(await closed, { code: 4321, reason: 'bye now' })
  t.same(done, [{ code: 4321, reason: 'bye now', willReconnect: false }])
  t.same(await after.next(), { value: undefined, done: true }, 'iteration ends with the client')
  t.same(await c[Symbol.asyncIterator]().next(), { value: undefined, done: true })
  t.equal(c.state, 'closed')
  t.throws(() => c.send('x'), ClientError)
  c.close()
})

test('reconnect: backoff sequence, then give up after maxAttempts', async (t) => {
  const port = await new Promise<number>(resolve => {
    const s: Server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number }
      s.close(() => resolve(port))
    })
  })
  const c = client(t, `ws://127.0.0.1:${port}/ws`, { reconnect: { initialDelay: 10, multiplier: 2, maxAttempts: 3 }, random: () => 0.5 })
  const delays: number[] = []
  const errors: ClientError[] = []
  c.on('reconnecting', ({ delay }) => delays.push(delay))
  c.on('error', err => errors.push(err as ClientError))
  await t.rejects(c.connect(), { code: 'WS_CLIENT_GAVE_UP' })
  t.same(delays, [5, 10, 20], 'half of each cap with random 0.5')
  t.equal(c.state, 'closed')
  t.match(errors.at(-1), { code: 'WS_CLIENT_GAVE_UP', message: '3 attempts failed' })
})

test('close codes: 1001, 1011 and 1012 reconnect, 1013 waits longer, 4001/1008/4409/1000 never', async (t) => {
  const app = await server(t)
  for (const [code, advice] of [[1001, 'reconnect'], [1011, 'reconnect'], [1012, 'reconnect'], [1013, 'backoff'], [4001, 'stop'], [1008, 'stop'], [4409, 'stop'], [1000, 'stop']] as const) {
    const c = client(t, urlOf(app, '/ws'), { reconnect: { initialDelay: 40 }, random: () => 0.5 })
    await c.connect()
    await until(() => c.clientId !== undefined)
    const events: unknown[] = []
    c.on('reconnecting', info => events.push(info))
    const closed = new Promise(resolve => c.once('close', resolve))
    app.wsManager.disconnect(c.clientId!, code, 'test')
    t.match(await closed, { code, willReconnect: advice !== 'stop' }, `${code}`)
    if (advice === 'stop') {
      t.equal(c.state, 'closed')
    } else {
      t.same(events, [{ attempt: 1, delay: advice === 'backoff' ? 80 : 20 }], `${code}: ${advice}`)
      c.close()
    }
  }
  const off = client(t, urlOf(app, '/ws'), { reconnect: false })
  await off.connect()
  await until(() => app.wsManager.getConnectionCount() === 1)
  dropAll(app)
  await new Promise(resolve => off.once('close', resolve))
  t.equal(off.state, 'closed', 'reconnect: false')
})

test('resume: the server drops the socket, messages are missed, the client comes back with exactly those, then live ones', async (t) => {
  const app = await server(t)
  const c = client<unknown>(t, urlOf(app, '/ws?user=ann&keep=this'), { reconnect: { initialDelay: 60 }, random: () => 0.99 })
  const got: unknown[] = []
  c.on('message', m => got.push(m))
  await c.connect()
  await until(() => c.clientId !== undefined)
  const id = c.clientId!
  app.wsManager.join(id, 'news')
  await app.wsManager.broadcast('m1', { room: 'news' })
  await until(() => got.length === 1)

  const resumed = new Promise(resolve => c.once('resumed', resolve))
  dropAll(app)
  await until(() => app.wsManager.getConnectionCount() === 0)
  await app.wsManager.broadcast('m2', { room: 'news' })
  app.wsManager.sendToUser('ann', 'm3')
  await app.wsManager.broadcast('not news', { room: 'sports' })
  t.same(await resumed, { replayed: 2 })
  t.equal(c.clientId, id, 'same client')
  t.same([...app.wsManager.getConnection(id)!.rooms], ['news'])
  t.equal(app.wsManager.getConnection(id)!.userId, 'ann', 'the URL kept its own query')
  await app.wsManager.broadcast('m4', { room: 'news' })
  await until(() => got.length === 4)
  t.same(got, ['m1', 'm2', 'm3', 'm4'], 'each once, in order')
})

test('resumeFailed: a session that expired gives a fresh one, and the app is told', async (t) => {
  const app = await server(t, undefined, 1)
  const c = client(t, urlOf(app, '/ws'), { reconnect: { initialDelay: 20 } })
  await c.connect()
  await until(() => c.clientId !== undefined)
  const first = c.clientId
  const failed = new Promise(resolve => c.once('resumeFailed', resolve))
  dropAll(app)
  t.same(await failed, { reason: 'unknown_session' })
  t.not(c.clientId, first)
})

test('the queue: sends while away go out in order after the reconnect; beyond maxQueueSize a clear error', async (t) => {
  const app = await server(t)
  const seen = received(app)
  const c = client(t, urlOf(app, '/ws'), { maxQueueSize: 3, reconnect: { initialDelay: 80 }, random: () => 0.99 })
  await c.connect()
  await until(() => app.wsManager.getConnectionCount() === 1)
  const reconnecting = new Promise(resolve => c.once('reconnecting', resolve))
  dropAll(app)
  await reconnecting
  c.send('q1')
  c.send('q2')
  c.send({ q: 3 })
  t.equal(c.queued, 3)
  t.throws(() => c.send('q4'), { code: 'WS_CLIENT_QUEUE_FULL' })
  await until(() => seen.length === 3)
  t.same(seen, ['q1', 'q2', '{"q":3}'])
  t.equal(c.queued, 0)
})

test('heartbeat: answers the server\'s pings, measures latency with its own', async (t) => {
  const app = await server(t, { mode: 'message', interval: 20, timeout: 2000 })
  const c = client(t, urlOf(app, '/ws'), { heartbeat: { interval: 30, timeout: 1000 } })
  await c.connect()
  await until(() => c.latency !== undefined, 2000, 'a round trip measured')
  t.ok(c.latency! >= 0)
  const conn = [...app.wsManager.connections()][0]
  t.ok(conn.rtt !== undefined, 'the server got pong answers too')
})

test('a dead server (open, but silent) is detected and left; the client reconnects', async (t) => {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' })
  t.teardown(() => new Promise(resolve => wss.close(resolve)))
  let connections = 0
  wss.on('connection', socket => {
    connections++
    socket.send('{"type":"ping","ts":1}')
  })
  await new Promise(resolve => wss.once('listening', resolve))
  const c = client(t, `ws://127.0.0.1:${(wss.address() as { port: number }).port}`, { heartbeat: { interval: 20, timeout: 80 }, reconnect: { initialDelay: 10 } })
  const errors: ClientError[] = []
  c.on('error', err => errors.push(err as ClientError))
  await c.connect()
  await until(() => connections === 2, 3000, 'a second connection')
  t.match(errors, [{ code: 'WS_CLIENT_SERVER_SILENT' }])
  c.close()
  for (const socket of wss.clients) socket.terminate()
})

test('open timeout: a server that never answers the upgrade', async (t) => {
  const sockets = new Set<import('node:net').Socket>()
  const silent = createServer(socket => sockets.add(socket)).listen(0, '127.0.0.1')
  t.teardown(() => { for (const s of sockets) s.destroy(); silent.close() })
  await new Promise(resolve => silent.once('listening', resolve))
  const c = client(t, `ws://127.0.0.1:${(silent.address() as { port: number }).port}`, { openTimeout: 40, reconnect: { maxAttempts: 1, initialDelay: 5 } })
  const errors: string[] = []
  c.on('error', err => errors.push((err as ClientError).code))
  await t.rejects(c.connect(), { code: 'WS_CLIENT_GAVE_UP' })
  t.same(errors, ['WS_CLIENT_OPEN_TIMEOUT', 'WS_CLIENT_OPEN_TIMEOUT', 'WS_CLIENT_GAVE_UP'])
})

test('plain routes: messages as they are; protocol: plain; a bad URL; no WebSocket at all', async (t) => {
  const app = await server(t)
  const auto = client(t, urlOf(app, '/plain'))
  const got: unknown[] = []
  auto.on('message', m => got.push(m))
  await auto.connect()
  await until(() => got.length === 6)
  t.same(got, ['plain hello', new Uint8Array([7, 8]), '{"type":"pong","as":"data"}', '{"type":broken', '{"type":"other"}', 'after'],
    'a pong before any server ping is data; heartbeat frames after one are not')
  t.equal(auto.latency, undefined, 'a pong nobody asked for measures nothing')

  const plain = client(t, urlOf(app, '/ws'), { protocol: 'plain' })
  const frames: unknown[] = []
  plain.on('message', m => frames.push(m))
  await plain.connect()
  await until(() => frames.length === 1)
  t.match(JSON.parse(frames[0] as string), { type: 'welcome' }, 'protocol: plain leaves the frames to the app')

  const bad = client(t, 'not a url', { reconnect: false })
  const errors: unknown[] = []
  bad.on('error', err => errors.push(err))
  await t.rejects(bad.connect(), { code: 'WS_CLIENT_GAVE_UP' })
  t.equal(errors.length, 2, 'the constructor\'s error, then giving up')
  t.throws(() => new StabilizerClient('ws://x'), TypeError)
})

test('listeners: once, off, and one that throws goes to error listeners', async (t) => {
  const app = await server(t)
  const c = client(t, urlOf(app, '/ws'))
  let opens = 0
  const count = (): void => { opens++ }
  c.once('open', count)
  const removed = (): void => { t.fail('removed') }
  c.on('open', removed)
  c.off('open', removed)
  c.off('resumed', removed)
  const errors: unknown[] = []
  c.on('welcome', () => { throw new Error('listener') })
  c.on('error', err => { errors.push(err); throw new Error('an error listener that throws is ignored') })
  await c.connect()
  await until(() => errors.length === 1)
  t.equal(opens, 1)
  t.equal(c.listenerCount('open'), 0)
  t.equal(c.listenerCount('reconnecting'), 0)
  t.match(errors, [{ message: 'listener' }])
})

test('the global WebSocket is used when there is one (browsers); a resume without replay; a long-lived connection resets the backoff', async (t) => {
  const app = await server(t)
  const g = globalThis as { WebSocket?: unknown }
  g.WebSocket = WebSocket
  t.teardown(() => { delete g.WebSocket })
  const c = new StabilizerClient(urlOf(app, '/no-replay'), { reconnect: { initialDelay: 20 }, minUptime: 0, random: () => 0.5 })
  t.teardown(() => c.close())
  await c.connect()
  await until(() => c.clientId !== undefined)
  const delays: number[] = []
  c.on('reconnecting', ({ delay }) => delays.push(delay))
  for (let i = 0; i < 2; i++) {
    const resumed = new Promise(resolve => c.once('resumed', resolve))
    dropAll(app)
    t.same(await resumed, { replayed: 0 })
  }
  t.same(delays, [10, 10], 'each connection lived long enough (minUptime 0): no growth')
})

test('a dead server is left with close() where the WebSocket cannot terminate (as in browsers)', async (t) => {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' })
  t.teardown(() => new Promise(resolve => { for (const s of wss.clients) s.terminate(); wss.close(resolve) }))
  let connections = 0
  wss.on('connection', socket => {
    connections++
    socket.send('{"type":"ping","ts":1}')
  })
  await new Promise(resolve => wss.once('listening', resolve))
  class BrowserLike extends WebSocket {
    constructor (url: string) {
      super(url)
      Object.defineProperty(this, 'terminate', { value: undefined })
    }
  }
  const c = client(t, `ws://127.0.0.1:${(wss.address() as { port: number }).port}`, { WebSocket: BrowserLike as unknown as SocketConstructor, heartbeat: { interval: 20, timeout: 60 }, reconnect: { initialDelay: 10 } })
  await c.connect()
  await until(() => connections === 2, 3000, 'a second connection')
  c.close()
})

test('connect twice at once, close while connecting, an iterator waiting at the close; no heartbeat', async (t) => {
  const app = await server(t)
  const c = client(t, urlOf(app, '/ws'), { heartbeat: false })
  await Promise.all([c.connect(), c.connect()])
  t.equal(c.state, 'open')
  const it = c[Symbol.asyncIterator]()
  const pending = it.next()
  c.close()
  t.same(await pending, { value: undefined, done: true })

  const early = client(t, urlOf(app, '/ws'))
  const connecting = early.connect()
  early.close()
  await t.rejects(connecting, { code: 'WS_CLIENT_CLOSED' })
})
