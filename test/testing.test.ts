import { test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import fastifyWebsocket from '@fastify/websocket'
import { createServer as createHttpServer } from 'node:http'
import { createServer, type Server, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'
import WebSocket from 'ws'
import wsStabilizer, { type DisconnectInfo, type WsStabilizerOptions } from '../plugin.ts'
import {
  wsTesting, WsTesting, WsTestClient, TestingTimeoutError, TestingClosedError, TestingNotOpenError, TestingCloseCodeError,
  TestingUpgradeRefusedError, TestingNotJsonError, TestingNotListeningError
} from '../lib/testing/index.ts'
import { until, urlOf } from './helpers.ts'

/*
 * fastify-websocket-stabilizer/testing against the real plugin: through injectWS and over a
 * real port, the first message at connect, waits by type, timeouts, closes, the resume
 * envelopes, and that a test's teardown leaves no socket or timer behind.
 */

interface T { after (fn: () => unknown): void }

const SECRET = 'testing-tests-secret-0123456789'

interface Gate { wait: Promise<void>, open (): void }
function gate (): Gate {
  let open!: () => void
  const wait = new Promise<void>(resolve => { open = resolve })
  return { wait, open }
}

/** An app with the plugin and the routes below; not listening unless asked. */
async function appFor (t: T, { listen = false, options = {}, slow = gate() }: { listen?: boolean, options?: WsStabilizerOptions, slow?: Gate } = {}): Promise<FastifyInstance> {
  const app = Fastify()
  await app.register(wsStabilizer, { reconnect: { secret: SECRET }, ...options })
  routes(app, slow)
  t.after(async () => {
    slow.open()
    await app.close()
  })
  if (listen) await app.listen({ port: 0, host: '127.0.0.1' })
  return app
}

function routes (app: FastifyInstance, slow: Gate): void {
  // sends at once, in the handler: the frame that a listener attached after `await injectWS` misses
  app.get('/hello', { websocket: true }, (_socket, request) => {
    const conn = request.wsConnection!
    conn.send({ type: 'hello', n: 1 })
    conn.on('message', (data, isBinary) => {
      const text = data.toString()
      if (text === 'close-me') conn.close(4000, 'asked')
      else if (text === 'close-quietly') conn.close(4001)
      else conn.send(isBinary ? data as Buffer : text)
    })
  })
  app.get('/echo', { websocket: true }, (_socket, request) => {
    const conn = request.wsConnection!
    conn.on('message', (data, isBinary) => conn.send(isBinary ? data as Buffer : data.toString()))
  })
  app.get('/feed', { websocket: true, config: { ws: { reconnect: true } } }, (_socket, request) => {
    const conn = request.wsConnection!
    conn.send({ price: 1 })
    conn.send('plain')
    conn.send(Buffer.from([1, 2, 3]))
  })
  app.get('/beat', { websocket: true, config: { ws: { heartbeat: { mode: 'message', interval: 30, timeout: 150 } } } }, (_socket, request) => {
    const conn = request.wsConnection!
    conn.on('message', data => conn.send(data.toString()))
  })
  app.get('/refuse', { websocket: true, config: { ws: { identify: () => { throw Object.assign(new Error('who are you'), { statusCode: 401 }) } } } }, () => {})
  app.get('/who', { websocket: true, config: { ws: { identify: (request) => ({ userId: String(request.headers['x-user']) }) } } }, (_socket, request) => {
    request.wsConnection!.send(request.wsConnection!.userId ?? 'nobody')
  })
  // reads nothing: a close frame is never answered
  app.get('/deaf', { websocket: true, config: { ws: false } }, (socket) => { socket.pause() })
  app.get('/slow', { websocket: true, preHandler: async () => { await slow.wait } }, (_socket, request) => {
    request.wsConnection!.send('at last')
  })
}

function activeHandles (): string[] {
  return process.getActiveResourcesInfo().filter(r => r === 'Timeout' || r === 'TCPSocketWrap' || r === 'TCPServerWrap').sort()
}

async function listening (t: T, onSocket: (socket: Socket) => void = () => {}): Promise<{ server: Server, port: number }> {
  const sockets: Socket[] = []
  const server = createServer(socket => {
    sockets.push(socket)
    onSocket(socket)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.after(() => {
    for (const s of sockets) s.destroy()
    return new Promise(resolve => server.close(resolve))
  })
  return { server, port: (server.address() as AddressInfo).port }
}

test('the first message, sent by the handler right at connect, is never missed', async t => {
  const app = await appFor(t, { listen: true })
  const ws = wsTesting(app, { test: t })
  for (const [how, client] of [
    ['inject', await ws.connect('/hello')],
    ['listen', await ws.connect('/hello', { transport: 'listen' })],
    ['url', await ws.connect(urlOf(app, '/hello'))]
  ] as const) {
    t.same(await client.json(), { type: 'hello', n: 1 }, how)
  }
})

test('inject needs no port: nothing listens and the client works', async t => {
  const app = await appFor(t)
  const ws = wsTesting(app, { test: t })
  const client = await ws.connect('/echo')
  t.equal(app.server.listening, false)
  t.equal(client.target, '/echo')
  t.equal(client.isOpen, true)
  client.send('hi')
  t.equal(await client.text(), 'hi')
})

test('transport: listen as the factory default, and an app that is not listening', async t => {
  const app = await appFor(t)
  const ws = wsTesting(app, { test: t, transport: 'listen' })
  await t.rejects(ws.connect('/echo'), new TestingNotListeningError('/echo'))
  await t.rejects(ws.connect('/echo'), { code: 'FST_WS_TESTING_NOT_LISTENING', message: /Cannot connect to `\/echo` over a port: the app is not listening/ })
  const injected = await ws.connect('/echo', { transport: 'inject' })
  injected.send('in')
  t.equal(await injected.text(), 'in')
  await app.listen({ port: 0, host: '127.0.0.1' })
  const real = await ws.connect('/echo')
  real.send('over tcp')
  t.equal(await real.text(), 'over tcp')
})

test('upgrade headers reach the route, on both transports', async t => {
  const app = await appFor(t, { listen: true })
  const ws = wsTesting(app, { test: t })
  t.equal(await (await ws.connect('/who', { headers: { 'x-user': 'ann' } })).text(), 'ann')
  t.equal(await (await ws.connect('/who', { headers: { 'x-user': 'bob' }, transport: 'listen' })).text(), 'bob')
})

test('a type filter takes the first JSON message of that type and keeps the others, in order', async t => {
  const app = await appFor(t)
  const ws = wsTesting(app, { test: t })
  const client = await ws.connect('/echo')
  client.send('{"type":"a","n":1}')
  client.send('not json')
  client.send('{"type":"b","n":2}')
  client.send('{"type":"a","n":3}')
  t.same(await client.json({ type: 'b' }), { type: 'b', n: 2 })
  await until(() => client.pending === 3, 1000, 'the others to be kept')
  t.same(await client.json({ type: 'a' }), { type: 'a', n: 1 })
  t.equal(await client.text(), 'not json')
  t.same(JSON.parse((await client.next({ type: 'a' })).data.toString()), { type: 'a', n: 3 })

  // a wait registered first is answered by the first matching message, whatever came before
  const later = client.json({ type: 'c' })
  client.send('{"type":"d"}')
  client.send('{"type":"c","last":true}')
  t.same(await later, { type: 'c', last: true })
  t.same(await client.json(), { type: 'd' })
})

test('a timeout rejects with what was awaited, where, and what came instead', async t => {
  const app = await appFor(t)
  const ws = wsTesting(app, { test: t, timeout: 60 })
  const client = await ws.connect('/echo')
  await t.rejects(client.next(), new TestingTimeoutError(60, 'a message on `/echo`; nothing else came'))
  client.send('{"type":"x"}')
  await until(() => client.pending === 1)
  await t.rejects(client.json({ type: 'welcome', timeout: 30 }), {
    code: 'FST_WS_TESTING_TIMEOUT',
    message: 'Timed out after 30 ms waiting for a JSON message of type `welcome` on `/echo`; 1 other message is in the inbox (x)'
  })
  client.send(Buffer.from([1]))
  client.send('text')
  client.send('[1]')
  client.send('null')
  await until(() => client.pending === 5)
  await t.rejects(client.json({ type: 'welcome' }), {
    message: 'Timed out after 60 ms waiting for a JSON message of type `welcome` on `/echo`; 5 other messages are in the inbox (x, binary, text, text, text)'
  })
  await t.rejects(client.envelope({ timeout: 10 }), { message: /waiting for a resume envelope \(`\{"type":"message"\}`\) on `\/echo`/ })
  t.equal(client.drain().length, 5)
  t.equal(client.pending, 0)
})

test('json() names what came when it is not JSON', async t => {
  const app = await appFor(t)
  const ws = wsTesting(app, { test: t })
  const client = await ws.connect('/echo')
  client.send(Buffer.from([1, 2, 3]))
  await t.rejects(client.json(), new TestingNotJsonError('/echo', 'a binary message (3 bytes)'))
  client.send('hello')
  await t.rejects(client.json(), { code: 'FST_WS_TESTING_NOT_JSON', message: 'Expected a JSON message on `/echo`, got `hello`' })
})

test('send: text, binary from a Buffer, a typed array or an ArrayBuffer, and JSON', async t => {
  const app = await appFor(t)
  const ws = wsTesting(app, { test: t })
  const client = await ws.connect<{ ok: boolean }, { ok: boolean }>('/echo')
  client.send('text')
  client.send(Buffer.from([1]))
  client.send(new Uint8Array([2, 3]))
  client.send(new Uint8Array([4, 5, 6]).buffer)
  client.send({ ok: true })
  const text = await client.next()
  t.same([text.isBinary, text.data.toString()], [false, 'text'])
  for (const bytes of [[1], [2, 3], [4, 5, 6]]) {
    const frame = await client.next()
    t.same([frame.isBinary, [...frame.data]], [true, bytes])
  }
  const json = await client.json()
  t.equal(json.ok, true)
  await client.close()
  t.throws(() => client.send('late'), new TestingNotOpenError('/echo', 'closed'))
})

test('a close while waiting rejects the wait at once; what came before is still taken', async t => {
  const app = await appFor(t)
  const ws = wsTesting(app, { test: t, timeout: 5000 })
  const client = await ws.connect('/hello')
  const started = Date.now()
  const waiting = client.json({ type: 'never' })
  client.send('close-me')
  await t.rejects(waiting, new TestingClosedError('/hello', '4000 (asked)', 'a JSON message of type `never`'))
  t.ok(Date.now() - started < 1000, 'not at the timeout')
  t.same(await client.json(), { type: 'hello', n: 1 }, 'the inbox outlives the socket')
  await t.rejects(client.next(), { code: 'FST_WS_TESTING_CLOSED', message: 'The socket to `/hello` closed with 4000 (asked) before a message came' })
  t.throws(() => client.send('x'), { code: 'FST_WS_TESTING_NOT_OPEN' })
})

test('expectClose: the code, another code, no close in time', async t => {
  const app = await appFor(t)
  const ws = wsTesting(app, { test: t })
  const a = await ws.connect('/hello')
  a.send('close-me')
  t.same(await a.expectClose(4000), { code: 4000, reason: 'asked' })
  t.same(await a.expectClose(), { code: 4000, reason: 'asked' })
  t.same(await a.close(), { code: 4000, reason: 'asked' }, 'close() of a closed client')

  const b = await ws.connect('/hello')
  b.send('close-quietly')
  await t.rejects(b.expectClose(1000), new TestingCloseCodeError('/hello', 1000, '4001'))

  const c = await ws.connect('/hello')
  await t.rejects(c.expectClose(1000, { timeout: 30 }), { code: 'FST_WS_TESTING_TIMEOUT', message: 'Timed out after 30 ms waiting for the socket to close with 1000 on `/hello`; it is open' })
  await t.rejects(c.expectClose(undefined, { timeout: 30 }), { message: /waiting for the socket to close on `\/hello`/ })
  c.send('close-me')
  await t.rejects(c.expectClose(4001), { message: 'Expected the socket to `/hello` to close with 4001, it closed with 4000 (asked)' })
})

test('close codes the client sends reach the server, promptly through injectWS too', async t => {
  const app = await appFor(t, { listen: true })
  const ws = wsTesting(app, { test: t })
  const seen: DisconnectInfo[] = []
  app.wsManager.on('disconnect', (_conn, info) => { seen.push(info) })
  for (const transport of ['inject', 'listen'] as const) {
    const client = await ws.connect('/echo', { transport })
    const started = Date.now()
    t.same(await client.close(4100, 'done'), { code: 4100, reason: 'done' })
    await until(() => seen.length === 1, 1000, 'the server to see the close')
    t.ok(Date.now() - started < 1000, `${transport}: the server did not wait for ws' closeTimeout`)
    t.match(seen.pop(), { code: 4100, reason: 'done', disconnectReason: 'client_close' })

    const dropped = await ws.connect('/echo', { transport })
    t.same(await dropped.terminate(), { code: 1006, reason: '' })
    await until(() => seen.length === 1, 1000, 'the server to see the drop')
    t.match(seen.pop(), { code: 1006, disconnectReason: 'network_error' })
  }
})

test('close() terminates a peer that never answers the close frame', async t => {
  // the deaf server socket reads nothing, not even the end: app.close() ends it after closeTimeout
  const app = await appFor(t, { listen: true, options: { closeTimeout: 100 } })
  const ws = wsTesting(app, { test: t, timeout: 100 })
  for (const transport of ['inject', 'listen'] as const) {
    const client = await ws.connect('/deaf', { transport })
    const started = Date.now()
    t.same(await client.close(), { code: 1006, reason: '' }, transport)
    t.ok(Date.now() - started < 1000)
  }
  t.equal(ws.openClients, 0)
})

test('a refused upgrade rejects with its HTTP status', async t => {
  const app = await appFor(t, { listen: true })
  const ws = wsTesting(app, { test: t })
  const refused = await ws.connect('/refuse').catch((err: Error) => err)
  t.ok(refused instanceof TestingUpgradeRefusedError)
  t.match(refused, { code: 'FST_WS_TESTING_UPGRADE_REFUSED', statusCode: 401, message: 'The upgrade to `/refuse` was refused with HTTP 401' })
  await t.rejects(ws.connect('/nowhere'), { code: 'FST_WS_TESTING_UPGRADE_REFUSED', statusCode: 404 })
  const url = urlOf(app, '/refuse')
  await t.rejects(ws.connect(url), { statusCode: 401, message: `The upgrade to \`${url}\` was refused with HTTP 401` })
  await t.rejects(ws.connect('/refuse', { transport: 'listen' }), { code: 'FST_WS_TESTING_UPGRADE_REFUSED', statusCode: 401 })
  t.equal(ws.openClients, 0)
})

test('a connection that does not open in time is given up', async t => {
  const slow = gate()
  const app = await appFor(t, { slow })
  const ws = wsTesting(app, { test: t, timeout: 50 })
  const events: string[] = []
  app.wsManager.on('connect', () => { events.push('connect') })
  app.wsManager.on('disconnect', (_conn, info) => { events.push(info.disconnectReason) })
  await t.rejects(ws.connect('/slow'), new TestingTimeoutError(50, 'the connection to `/slow` to open'))
  slow.open()
  await new Promise(resolve => setTimeout(resolve, 50))
  // the server may still complete the upgrade it was in, on a stream that is gone: it drops at once
  t.equal(app.wsManager.getConnectionCount(), 0, 'nothing left of the given-up opening')
  t.ok(events.length === 0 || events.join() === 'connect,network_error', events.join())
  const client = await ws.connect('/slow')
  t.equal(await client.text(), 'at last')

  // a server that accepts TCP and never answers the upgrade
  const { port } = await listening(t)
  await t.rejects(ws.connect(`ws://127.0.0.1:${port}/`, { timeout: 40 }), { code: 'FST_WS_TESTING_TIMEOUT', message: /40 ms waiting for the connection to `ws:\/\/127\.0\.0\.1:\d+\/` to open/ })
})

test('a refused TCP connection rejects with ws\' error', async t => {
  const { server, port } = await listening(t)
  await new Promise(resolve => server.close(resolve))
  const app = await appFor(t)
  const ws = wsTesting(app, { test: t })
  await t.rejects(ws.connect(`ws://127.0.0.1:${port}/`), { code: 'ECONNREFUSED' })
})

test('closeAll waits for a connection still opening, then closes it', async t => {
  const slow = gate()
  const app = await appFor(t, { slow })
  const ws = wsTesting(app)
  const opening = ws.connect('/slow')
  const closing = ws.closeAll()
  setTimeout(slow.open, 20)
  await closing
  const client = await opening
  t.equal(client.isOpen, false)
  t.equal(ws.openClients, 0)
})

test('resume-protocol routes: the welcome, the envelopes, and their data unwrapped', async t => {
  const app = await appFor(t)
  const ws = wsTesting(app, { test: t })
  const raw = await ws.connect('/feed')
  const first = await raw.json<{ type: string }>()
  t.equal(first.type, 'welcome', 'the welcome is the first frame')
  t.match(await raw.json(), { type: 'message', offset: Number, data: { price: 1 } }, 'next() and json() give the frames as they come')

  const client = await ws.connect('/feed')
  const welcome = await client.welcome()
  t.match(welcome, { type: 'welcome', v: 1, clientId: String, token: String, offset: Number, resumed: false })
  const price = await client.envelope<{ price: number }>()
  t.match(price, { type: 'message', offset: Number, data: { price: 1 } })
  t.equal(await client.data<string>(), 'plain')
  const bytes = await client.envelope<Buffer>()
  t.equal(bytes.binary, true)
  t.same([...bytes.data], [1, 2, 3], 'binary data decoded from base64')
  t.ok(bytes.offset! > price.offset!)

  const again = await ws.connect('/feed')
  await again.welcome()
  t.same(await again.data(), { price: 1 }, 'data() without taking the welcome first')
})

test('answerPings: message-mode heartbeats are answered and kept out of the inbox', async t => {
  const app = await appFor(t)
  const ws = wsTesting(app, { test: t })
  const quiet = await ws.connect('/beat', { answerPings: true })
  const plain = await ws.connect('/beat')
  t.match(await plain.json({ type: 'ping' }), { type: 'ping', ts: Number }, 'by default the pings are in the inbox')
  t.same(await plain.expectClose(1006, { timeout: 1000 }), { code: 1006, reason: '' }, 'and unanswered: the server terminates the connection')
  t.equal(quiet.isOpen, true, 'alive past the heartbeat timeout')
  quiet.send('{"type":"ping"}')
  quiet.send(Buffer.from([9]))
  quiet.send('after')
  t.same([...(await quiet.next()).data], [9])
  t.equal(await quiet.text(), 'after', 'the server\'s pong and pings were not kept')
  t.equal(quiet.pending, 0)
})

test('@fastify/websocket on its own server: injectWS still works, and a given-up opening is terminated when it opens', async t => {
  const slow = gate()
  const app = Fastify()
  const other = createHttpServer()
  const wsOptions = { server: other, closeTimeout: 50 } // ws' types lack closeTimeout
  await app.register(fastifyWebsocket, { options: wsOptions })
  await app.register(wsStabilizer, { closeTimeout: 50 })
  routes(app, slow)
  t.after(async () => {
    slow.open()
    await app.close()
  })
  const ws = wsTesting(app, { test: t, timeout: 50 })
  await t.rejects(ws.connect('/slow'), { code: 'FST_WS_TESTING_TIMEOUT' })
  const disconnected = new Promise<DisconnectInfo>(resolve => app.wsManager.once('disconnect', (_conn, info) => resolve(info)))
  slow.open()
  t.match(await disconnected, { code: 1006 }, 'opened late, then terminated')
  const client = await ws.connect('/echo', { timeout: 1000 })
  client.send('x')
  t.equal(await client.text(), 'x')
  t.same(await client.close(), { code: 1000, reason: '' })
})

test('teardown: a test\'s clients are closed when it ends, and nothing is left open', async t => {
  const before = activeHandles()
  let ws!: WsTesting
  let app!: FastifyInstance
  let waits!: Promise<unknown>
  await t.test('a test that leaves its clients open, and a wait pending', async tt => {
    app = await appFor(t, { listen: true })
    ws = wsTesting(app, { test: tt, timeout: 10_000 })
    await ws.connect('/hello')
    const b = await ws.connect('/echo', { transport: 'listen' })
    waits = b.next({ timeout: 10_000 }).catch((err: Error) => err)
    tt.equal(ws.openClients, 2)
    tt.equal(app.wsManager.getConnectionCount(), 2)
  })
  t.equal(ws.openClients, 0)
  t.match(await waits, { code: 'FST_WS_TESTING_CLOSED' }, 'the pending wait ended with the close, its timer cleared')
  await until(() => app.wsManager.getConnectionCount() === 0, 500, 'the server to see the closes')
  const started = Date.now()
  await app.close()
  t.ok(Date.now() - started < 500, 'app.close() had nothing to wait for')
  await until(() => activeHandles().length <= before.length, 500, 'handles to go')
  t.same(activeHandles(), before, 'no socket, server or timer left')
})

test('WsTestClient wraps a socket opened by hand', async t => {
  // over a port: @fastify/websocket's own injectWS is refused (400) by ws 8.23.1, see open.ts
  const app = await appFor(t, { listen: true })
  const socket = new WebSocket(urlOf(app, '/hello'))
  const client = new WsTestClient(socket, 'mine') // before it opens: the message sent at connect is kept
  t.equal(client.socket, socket)
  t.same(await client.json(), { type: 'hello', n: 1 })
  const started = Date.now()
  await t.rejects(client.next(), { message: 'Timed out after 2000 ms waiting for a message on `mine`; nothing else came' })
  t.ok(Date.now() - started >= 1900, 'the default timeout')
  t.same(await client.terminate(), { code: 1006, reason: '' })
})

test('app.close() with injected clients still open returns at once, and they see 1012', async t => {
  const app = await appFor(t)
  const ws = wsTesting(app, { test: t })
  const clients = [await ws.connect('/echo'), await ws.connect('/hello')]
  const started = Date.now()
  await app.close()
  t.ok(Date.now() - started < 500, 'no wait for closeTimeout')
  for (const client of clients) t.match(await client.expectClose(1012), { reason: 'server shutting down' })
  t.equal(ws.openClients, 0)
})
