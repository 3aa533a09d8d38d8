import { test } from 'tap'
import WebSocket, { WebSocketServer } from 'ws'
import { createServer, type Socket } from 'node:net'
import type { FastifyInstance } from 'fastify'
import type { WsStabilizerOptions } from '../plugin.ts'
import { StabilizerClient, ClientError, type ClientOptions } from '../lib/client/index.ts'
import { buildApp, until, urlOf } from './helpers.ts'

/*
 * The client against the real plugin over loopback (and, for what the plugin never does,
 * a bare ws server): connect, send and receive, close codes, resume, the queue, the
 * heartbeat, the open timeout, plain routes.
 */

const SECRET = 'client-tests-secret-0123456789ab'

type Tap = Parameters<typeof buildApp>[0] & { teardown (fn: () => unknown): void }

interface Got { id: string, text: string }

async function server (t: Tap, options: WsStabilizerOptions = {}, maxDisconnect = 60_000): Promise<{ app: FastifyInstance, got: Got[] }> {
  const got: Got[] = []
  const app = await buildApp(t, { heartbeat: { mode: 'message', interval: 1000, timeout: 5000 }, reconnect: { secret: SECRET }, ...options }, app => {
    app.get('/ws', { websocket: true, config: { ws: { reconnect: { maxDisconnect }, identify: r => ({ userId: (r.query as { user?: string }).user }) } } }, (_socket, request) => {
      const conn = request.wsConnection!
      conn.on('message', data => {
        const text = data.toString()
        got.push({ id: conn.id, text })
        if (text === 'echo-me') conn.send('echo')
      })
    })
    app.get('/no-replay', { websocket: true, config: { ws: { reconnect: { replay: false } } } }, () => {})
    app.get('/plain', { websocket: true }, (socket) => {
      socket.send('plain hello')
      socket.send(Buffer.from([7, 8]))
      socket.send('{"type":"message","data":"an app message that looks like an envelope"}')
      socket.send('{"type":"pong","as":"data"}')
    })
    app.get('/quiet', { websocket: true }, () => {})
  })
  return { app, got }
}

function client<In = unknown> (t: Tap, url: string, options: ClientOptions = {}): StabilizerClient<In> {
  const c = new StabilizerClient<In>(url, { WebSocket, ...options })
  t.teardown(() => c.close())
  return c
}

/** Cuts every connection of the app without a close frame, as a lost network would. */
function dropAll (app: FastifyInstance): void {
  for (const conn of app.wsManager.connections()) (conn.socket as unknown as { _socket: Socket })._socket.destroy()
}

function next<T> (c: StabilizerClient, event: 'close' | 'resumed' | 'resumeFailed' | 'reconnecting' | 'open' | 'welcome'): Promise<T> {
  return new Promise(resolve => c.once(event, ((info: T) => resolve(info)) as never))
}

function errorsOf (c: StabilizerClient): string[] {
  const codes: string[] = []
  c.on('error', err => codes.push((err as ClientError).code))
  return codes
}

/** A bare ws server on loopback for frames the plugin never sends; closed after the test. */
async function bareServer (t: Tap, onConnection: (socket: WebSocket, index: number) => void): Promise<string> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' })
  let index = 0
  wss.on('connection', socket => onConnection(socket, index++))
  t.teardown(() => new Promise(resolve => {
    for (const socket of wss.clients) socket.terminate()
    wss.close(resolve)
  }))
  await new Promise(resolve => wss.once('listening', resolve))
  return `ws://127.0.0.1:${(wss.address() as { port: number }).port}/`
}

test('connect, send text, binary and JSON, receive by events and by async iteration, close(code, reason)', async (t) => {
  const { app, got } = await server(t)
  const c = client<unknown>(t, urlOf(app, '/ws?user=ann'))
  t.equal(c.state, 'idle')
  t.throws(() => c.send('too early'), { code: 'WS_CLIENT_CLOSED' })
  const welcomed = next<{ clientId: string }>(c, 'welcome')
  await Promise.all([c.connect(), c.connect()])
  await c.connect()
  t.equal(c.state, 'open')
  t.equal((await welcomed).clientId, c.clientId)
  const iterator = c[Symbol.asyncIterator]()
  const messages: unknown[] = []
  c.on('message', m => messages.push(m))
  c.send('echo-me')
  c.send(new Uint8Array([1, 2, 3]))
  c.send(new Uint8Array([4, 5]).buffer)
  c.send({ json: true })
  await until(() => got.length === 4)
  t.same(got.map(g => g.text), ['echo-me', '\u0001\u0002\u0003', '\u0004\u0005', '{"json":true}'])
  t.same(await iterator.next(), { value: 'echo', done: false }, 'the envelope is unwrapped')
  const waiting = iterator.next()
  await app.wsManager.broadcast({ n: 1 })
  await app.wsManager.broadcast(Buffer.from([9, 9]))
  app.wsManager.send(c.clientId!, 'volatile', { volatile: true })
  t.same(await waiting, { value: { n: 1 }, done: false }, 'an iterator that waits gets it')
  t.same((await iterator.next()).value, new Uint8Array([9, 9]), 'binary arrives as bytes')
  t.same((await iterator.next()).value, 'volatile')
  t.same(messages, ['echo', { n: 1 }, new Uint8Array([9, 9]), 'volatile'])
  t.equal(c.offset, 3, 'the offset of the last message that had one (a volatile one has none)')
  await iterator.return!()

  const serverSaw = new Promise(resolve => app.wsManager.once('disconnect', (_conn, info) => resolve(info)))
  const closes: unknown[] = []
  c.on('close', info => closes.push(info))
  c.on('reconnecting', () => t.fail('no reconnect after close()'))
  const after = c[Symbol.asyncIterator]()
  const pending = after.next()
  t.throws(() => c.close(1001), RangeError, 'browsers allow only 1000 and 3000-4999')
  t.throws(() => c.close(5000), RangeError)
  c.close(4321, 'bye now')
  t.match(await serverSaw, { code: 4321, reason: 'bye now' })
  t.same(closes, [{ code: 4321, reason: 'bye now', willReconnect: false }])
  t.same(await pending, { value: undefined, done: true }, 'iteration ends with the client')
  t.same(await c[Symbol.asyncIterator]().next(), { value: undefined, done: true })
  t.equal(c.state, 'closed')
  t.equal(c.clientId, undefined, 'close() ends the session')
  t.throws(() => c.send('x'), ClientError)
  c.close()
  t.equal(app.wsManager.getConnectionCount(), 0)
})

test('close codes: 1001, 1006, 1011, 1012 reconnect; 1013 waits longer; 1000, 1008, 1009, 4001, 4401, 4403, 4409, 4429 never', async (t) => {
  const { app } = await server(t)
  const advice = { 1001: 'reconnect', 1006: 'reconnect', 1011: 'reconnect', 1012: 'reconnect', 1013: 'backoff', 1000: 'stop', 1008: 'stop', 1009: 'stop', 4001: 'stop', 4401: 'stop', 4403: 'stop', 4409: 'stop', 4429: 'stop' } as const
  for (const [key, expected] of Object.entries(advice)) {
    const code = Number(key)
    const c = client(t, urlOf(app, '/ws'), { reconnect: { initialDelay: 40 }, random: () => 0.5, protocol: 'stabilizer' })
    await c.connect()
    const errors = errorsOf(c)
    const events: unknown[] = []
    c.on('reconnecting', info => events.push(info))
    const closed = next(c, 'close')
    if (code === 1006) dropAll(app)
    else app.wsManager.disconnect(c.clientId!, code, 'test')
    t.match(await closed, { code, willReconnect: expected !== 'stop' }, `${code}`)
    if (expected === 'stop') {
      t.equal(c.state, 'closed', `${code}: stop`)
      t.same(errors, ['WS_CLIENT_GAVE_UP'])
    } else {
      t.same(events, [{ attempt: 1, delay: expected === 'backoff' ? 80 : 20 }], `${code}: ${expected}`)
      t.equal(c.state, 'reconnecting')
      await c.connect()
      t.equal(c.state, 'open', `${code}: back`)
      c.close()
    }
    await until(() => app.wsManager.getConnectionCount() === 0)
  }
  const off = client(t, urlOf(app, '/ws'), { reconnect: false })
  await off.connect()
  const closed = next(off, 'close')
  dropAll(app)
  t.match(await closed, { code: 1006, willReconnect: false })
  t.equal(off.state, 'closed', 'reconnect: false')
})

test('HTTP 503 at the upgrade counts as a failed attempt and backs off; the client gets in once there is room', async (t) => {
  const { app } = await server(t, { limits: { maxConnections: 1 } })
  const first = client(t, urlOf(app, '/ws'))
  await first.connect()
  const second = client(t, urlOf(app, '/ws'), { reconnect: { initialDelay: 10, maxDelay: 20 } })
  const errors = errorsOf(second)
  const attempts: number[] = []
  second.on('reconnecting', ({ attempt }) => attempts.push(attempt))
  const connected = second.connect()
  await until(() => attempts.length >= 2)
  t.equal(second.state, 'reconnecting')
  t.match(errors.slice(0, 2), ['WS_CLIENT_SOCKET_ERROR', 'WS_CLIENT_SOCKET_ERROR'], 'the refused upgrades')
  first.close()
  await connected
  t.equal(second.state, 'open')
  t.ok(attempts.length >= 2)
})

test('resume: the server drops the socket, messages are missed, the client comes back with exactly those, once, in order, then live ones', async (t) => {
  const { app } = await server(t)
  const c = client<unknown>(t, urlOf(app, '/ws?user=ann&keep=this'), { reconnect: { initialDelay: 60 }, random: () => 0.99 })
  const got: unknown[] = []
  c.on('message', m => got.push(m))
  c.on('resumeFailed', () => t.fail('resumed'))
  await c.connect()
  await until(() => c.clientId !== undefined)
  const id = c.clientId!
  app.wsManager.join(id, 'news')
  await app.wsManager.broadcast('m1', { room: 'news' })
  await until(() => got.length === 1)

  const resumed = next(c, 'resumed')
  const opened = next(c, 'open')
  dropAll(app)
  await until(() => app.wsManager.getConnectionCount() === 0)
  t.equal(c.state, 'reconnecting')
  await app.wsManager.broadcast('m2', { room: 'news' })
  app.wsManager.sendToUser('ann', 'm3')
  await app.wsManager.broadcast('not news', { room: 'sports' })
  await app.wsManager.broadcast(Buffer.from([1, 2]), { room: 'news' })
  t.same(await resumed, { replayed: 3 })
  await opened
  t.equal(c.clientId, id, 'the same client')
  t.same([...app.wsManager.getConnection(id)!.rooms], ['news'], 'in its rooms again')
  t.equal(app.wsManager.getConnection(id)!.userId, 'ann', 'the URL kept its own query')
  await app.wsManager.broadcast('m4', { room: 'news' })
  await until(() => got.length === 5)
  t.same(got, ['m1', 'm2', 'm3', new Uint8Array([1, 2]), 'm4'], 'each once, in order')
})

test('resumeFailed: the session is gone, the client gets a fresh one and the app is told', async (t) => {
  const { app } = await server(t, {}, 1)
  const c = client(t, urlOf(app, '/ws'), { reconnect: { initialDelay: 20 } })
  await c.connect()
  await until(() => c.clientId !== undefined)
  const first = c.clientId
  c.on('resumed', () => t.fail('resumed'))
  const failed = next(c, 'resumeFailed')
  dropAll(app)
  t.same(await failed, { reason: 'unknown_session', resent: 0 })
  t.not(c.clientId, first)
})

test('a resume on a route without replay: resumed with nothing to replay', async (t) => {
  const { app } = await server(t)
  const c = client(t, urlOf(app, '/no-replay'), { reconnect: { initialDelay: 10 } })
  await c.connect()
  await until(() => c.clientId !== undefined)
  const id = c.clientId
  const resumed = next(c, 'resumed')
  dropAll(app)
  t.same(await resumed, { replayed: 0 })
  t.equal(c.clientId, id)
})

test('the queue: sends while away go out in order after the reconnect (after its welcome); beyond maxQueueSize a clear error', async (t) => {
  const { app, got } = await server(t)
  const c = client(t, urlOf(app, '/ws'), { maxQueueSize: 3, reconnect: { initialDelay: 80 }, random: () => 0.99 })
  await c.connect()
  await until(() => c.clientId !== undefined)
  const id = c.clientId!
  const reconnecting = next(c, 'reconnecting')
  dropAll(app)
  await reconnecting
  c.send('q1')
  c.send(new Uint8Array([50]))
  c.send({ q: 3 })
  t.equal(c.queued, 3)
  t.throws(() => c.send('q4'), { code: 'WS_CLIENT_QUEUE_FULL', message: /maxQueueSize \(3\)/ })
  const order: string[] = []
  c.on('resumed', () => order.push(`resumed, ${c.queued} queued`))
  c.on('open', () => order.push(`open, ${c.queued} queued`))
  await until(() => got.length === 3)
  t.same(got, [{ id, text: 'q1' }, { id, text: '2' }, { id, text: '{"q":3}' }], 'in order, on the resumed session')
  t.same(order, ['resumed, 3 queued', 'open, 0 queued'])
  t.equal(c.queued, 0)
})

test('heartbeat: answers the server\'s pings, pings when idle, measures latency; heartbeat frames never reach the app', async (t) => {
  const { app } = await server(t, { heartbeat: { mode: 'message', interval: 30, timeout: 5000 } })
  const c = client(t, urlOf(app, '/ws'), { heartbeat: { interval: 20, timeout: 2000 } })
  const messages: unknown[] = []
  c.on('message', m => messages.push(m))
  await c.connect()
  await until(() => c.latency !== undefined, 3000, 'a round trip measured')
  t.ok(c.latency! >= 0)
  const conn = app.wsManager.getConnection(c.clientId!)!
  await until(() => conn.rtt !== undefined, 3000, 'the server measured its own')
  t.same(messages, [], 'only heartbeat frames came')
})

test('a dead server (the plugin\'s socket stops reading) is detected and left; the client resumes on a new connection', async (t) => {
  const { app } = await server(t)
  const c = client(t, urlOf(app, '/ws'), { heartbeat: { interval: 20, timeout: 100, start: 'open' }, reconnect: { initialDelay: 10 } })
  const errors = errorsOf(c)
  await c.connect()
  await until(() => c.latency !== undefined, 3000, 'the server answers pings')
  const id = c.clientId!
  const raw = (app.wsManager.getConnection(id)!.socket as unknown as { _socket: Socket })._socket
  t.teardown(() => raw.destroy())
  const resumed = next(c, 'resumed')
  raw.pause()
  t.same(await resumed, { replayed: 0 })
  t.equal(c.clientId, id)
  t.same(errors, ['WS_CLIENT_SERVER_SILENT'])
})

test('a dead server that never sent a thing: found with start: open; left with close() where the WebSocket cannot terminate (browsers)', async (t) => {
  let connections = 0
  const url = await bareServer(t, () => { connections++ })
  class BrowserLike extends WebSocket {
    constructor (url: string) {
      super(url)
      Object.defineProperty(this, 'terminate', { value: undefined })
    }
  }
  const c = client(t, url, { WebSocket: BrowserLike, heartbeat: { interval: 20, timeout: 60, start: 'open' }, reconnect: { initialDelay: 10 } })
  const errors = errorsOf(c)
  await c.connect()
  await until(() => connections === 2, 3000, 'a second connection')
  t.equal(errors[0], 'WS_CLIENT_SERVER_SILENT')
})

test('a server ping starts the watch; a server that then goes silent is left', async (t) => {
  let connections = 0
  const url = await bareServer(t, socket => {
    connections++
    socket.send('{"type":"ping","ts":1}')
  })
  const c = client(t, url, { heartbeat: { interval: 20, timeout: 60 }, reconnect: { initialDelay: 10 } })
  const errors = errorsOf(c)
  await c.connect()
  await until(() => connections === 2, 3000, 'a second connection')
  t.equal(errors[0], 'WS_CLIENT_SERVER_SILENT')
})

test('open timeout: a server that never answers the upgrade; an attempt that waits for a welcome that never comes', async (t) => {
  const sockets = new Set<Socket>()
  const silent = createServer(socket => sockets.add(socket)).listen(0, '127.0.0.1')
  t.teardown(() => {
    for (const s of sockets) s.destroy()
    silent.close()
  })
  await new Promise(resolve => silent.once('listening', resolve))
  const c = client(t, `ws://127.0.0.1:${(silent.address() as { port: number }).port}`, { openTimeout: 40, reconnect: { maxAttempts: 1, initialDelay: 5 } })
  const errors = errorsOf(c)
  await t.rejects(c.connect(), { code: 'WS_CLIENT_GAVE_UP', message: '1 reconnect attempts in a row failed' })
  t.same(errors, ['WS_CLIENT_OPEN_TIMEOUT', 'WS_CLIENT_OPEN_TIMEOUT', 'WS_CLIENT_GAVE_UP'])

  const { app } = await server(t)
  const waiting = client(t, urlOf(app, '/quiet'), { openTimeout: 40, protocol: 'stabilizer', reconnect: false })
  const opened = next(waiting, 'open')
  const failed = waiting.connect()
  await t.rejects(failed, { code: 'WS_CLIENT_GAVE_UP' })
  t.equal(await Promise.race([opened, 'never opened']), 'never opened')
})

test('plain routes: messages as they are; protocol: plain; protocol: stabilizer on a plain route', async (t) => {
  const { app } = await server(t)
  const auto = client(t, urlOf(app, '/plain'))
  const got: unknown[] = []
  auto.on('message', m => got.push(m))
  await auto.connect()
  await until(() => got.length === 4)
  t.same(got, ['plain hello', new Uint8Array([7, 8]), '{"type":"message","data":"an app message that looks like an envelope"}', '{"type":"pong","as":"data"}'],
    'no envelope unwrapped where no welcome came; a pong before any server ping is data')
  t.equal(auto.clientId, undefined)

  const plain = client(t, urlOf(app, '/ws'), { protocol: 'plain' })
  const frames: unknown[] = []
  plain.on('message', m => frames.push(m))
  await plain.connect()
  await until(() => frames.length === 1)
  t.match(JSON.parse(frames[0] as string), { type: 'welcome' }, 'protocol: plain leaves the frames to the app')
  t.equal(plain.clientId, undefined)

  const strict = client(t, urlOf(app, '/plain'), { protocol: 'stabilizer' })
  const errors = errorsOf(strict)
  const first = new Promise(resolve => strict.once('message', resolve))
  await strict.connect()
  t.equal(await first, 'plain hello')
  t.same(errors, ['WS_CLIENT_NOT_STABILIZER'])

  const closing = client(t, urlOf(app, '/plain'), { protocol: 'stabilizer' })
  closing.on('error', () => closing.close())
  closing.on('message', () => t.fail('closed by the error listener: nothing more'))
  closing.on('open', () => t.fail('closed by the error listener: never open'))
  await t.rejects(closing.connect(), { code: 'WS_CLIENT_CLOSED' })
  t.equal(closing.state, 'closed')
})

test('frames the plugin never sends: broken envelopes, a route that stops speaking the protocol, a first binary frame', async (t) => {
  const url = await bareServer(t, (socket, index) => {
    if (index > 0) {
      socket.send('no welcome any more')
      return
    }
    socket.send(JSON.stringify({ type: 'welcome', v: 1, clientId: 'c1', token: 't1', offset: 5, resumed: false }))
    socket.send('{"type":"message","offset":6,"binary":true,"data":"not base64!"}')
    socket.send('{"type":"message"broken')
    socket.send('{"type":"other"}')
    socket.send(Buffer.from([1]))
    socket.send('{"type":"message","offset":7,"data":"last"}')
    socket.close(1012)
  })
  const c = client(t, `${url}?a=1`, { reconnect: { initialDelay: 5 } })
  const seen: unknown[] = []
  c.on('message', m => seen.push(m))
  const errors = errorsOf(c)
  const lost = next<{ code: number }>(c, 'close')
  await c.connect()
  t.match(await lost, { code: 1012, willReconnect: true })
  t.same(seen, ['{"type":"message"broken', '{"type":"other"}', new Uint8Array([1]), 'last'], 'what is no envelope reaches the app as it came')
  t.same(errors, ['WS_CLIENT_BAD_FRAME'])
  t.equal(c.offset, 7)
  t.equal(c.clientId, 'c1')
  c.on('resumed', () => t.fail('not resumed'))
  await next(c, 'open')
  await until(() => seen.length === 5)
  t.equal(seen[4], 'no welcome any more', 'the resume waited for a welcome; a message came instead')
  t.equal(c.clientId, undefined, 'the session is dropped: the route runs plain now')
  t.equal(c.offset, 0)
  t.same(errors, ['WS_CLIENT_BAD_FRAME'])

  const binaryFirst = await bareServer(t, socket => socket.send(Buffer.from([2])))
  const b = client(t, binaryFirst, { protocol: 'stabilizer' })
  const bErrors = errorsOf(b)
  const bin = new Promise(resolve => b.once('message', resolve))
  await b.connect()
  t.same(await bin, new Uint8Array([2]))
  t.same(bErrors, ['WS_CLIENT_NOT_STABILIZER'])
})

test('the global WebSocket is used when there is one (browsers, Node 22); none at all is a clear error; a URL the WebSocket refuses gives up at once', async (t) => {
  const { app } = await server(t)
  const g = globalThis as { WebSocket?: unknown }
  const before = g.WebSocket
  t.teardown(() => { g.WebSocket = before })
  delete g.WebSocket
  t.throws(() => new StabilizerClient('ws://x'), { name: 'TypeError', message: /Expected a WebSocket class/ })
  g.WebSocket = WebSocket
  const c = new StabilizerClient(urlOf(app, '/ws'))
  t.teardown(() => c.close())
  await c.connect()
  t.equal(c.state, 'open')

  const bad = client(t, 'not a url')
  const errors = errorsOf(bad)
  await t.rejects(bad.connect(), { code: 'WS_CLIENT_GAVE_UP', message: /could not be created/ })
  t.same(errors, ['WS_CLIENT_GAVE_UP'])
  t.equal(bad.state, 'closed')
})

test('close while connecting rejects connect(); a listener that throws goes to the error listeners', async (t) => {
  const { app } = await server(t)
  const early = client(t, urlOf(app, '/ws'))
  const connecting = early.connect()
  t.equal(early.state, 'connecting')
  early.close()
  await t.rejects(connecting, { code: 'WS_CLIENT_CLOSED' })

  const c = client(t, urlOf(app, '/ws'))
  const errors: unknown[] = []
  c.on('welcome', () => { throw new Error('listener') })
  c.on('error', err => { errors.push(err); throw new Error('an error listener that throws is ignored') })
  await c.connect()
  await until(() => errors.length === 1)
  t.match(errors, [{ message: 'listener' }])
  await c.connect()
  c.close()
  const again = c.connect()
  t.equal(c.state, 'connecting', 'a closed client connects again')
  await again
  t.equal(c.state, 'open')
})

test('a server ping before the welcome is answered; the watch starts once the connection is ready', async (t) => {
  const pongs: string[] = []
  let clientPings = 0
  const url = await bareServer(t, socket => {
    socket.on('message', data => {
      const text = data.toString()
      if (text.includes('"ping"')) clientPings++
      if (text.includes('"pong"')) {
        pongs.push(text)
        socket.send(JSON.stringify({ type: 'welcome', v: 1, clientId: 'c9', token: 't9', offset: 0, resumed: false }))
      }
    })
    socket.send('{"type":"ping","ts":42}')
  })
  const c = client(t, url, { protocol: 'stabilizer', heartbeat: { interval: 20, timeout: 5000 } })
  await c.connect()
  t.same(pongs.map(p => JSON.parse(p)), [{ type: 'pong', ts: 42 }], 'answered while still waiting for the welcome')
  t.equal(c.clientId, 'c9')
  t.equal(c.state, 'open')
  t.equal(clientPings, 0, 'no ping of its own before it was ready')
  await until(() => clientPings > 0, 2000)
  t.pass('the watch runs: a ping after 20 ms of quiet')
})

test('a first server ping on an open connection starts the watch at once; later ones are only answered', async (t) => {
  let clientPings = 0
  let pongs = 0
  const url = await bareServer(t, socket => {
    socket.on('message', data => {
      const text = data.toString()
      if (text === 'go') socket.send('{"type":"ping","ts":7}')
      else if (text.includes('"pong"')) pongs++
      else if (text.includes('"ping"')) clientPings++
    })
  })
  const c = client(t, url, { heartbeat: { interval: 20, timeout: 5000 } })
  await c.connect()
  t.equal(c.state, 'open')
  c.send('go')
  await until(() => clientPings > 0, 2000, 'a ping of its own after 20 ms of quiet')
  t.pass('the watch started on the open connection')
  c.send('go')
  await until(() => pongs === 2, 2000, 'the second ping answered too')
  t.equal(c.state, 'open')
})
