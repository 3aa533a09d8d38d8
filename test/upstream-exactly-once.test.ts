import { test } from 'tap'
import WebSocket from 'ws'
import { randomInt } from 'node:crypto'
import type { Socket } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { defineMessages, type ManagedConnection } from '../plugin.ts'
import { StabilizerClient, type ClientOptions } from '../lib/client/index.ts'
import { buildApp, until, urlOf } from './helpers.ts'
import { Rng } from './fuzz/prng.ts'

/*
 * Protocol 2 end to end over loopback: a client sends thousands of numbered messages while
 * the server cuts its socket at random moments (a terminate from the server, or a cut of
 * the TCP socket under it); the route's listener, or its message handler, sees each exactly
 * once and in order. Replay a run with UPSTREAM_SEED=<seed>.
 */

const SEED = process.env.UPSTREAM_SEED === undefined || process.env.UPSTREAM_SEED === '' ? randomInt(2 ** 31) : Number(process.env.UPSTREAM_SEED)
const SECRET = 'upstream-tests-secret-0123456789'
const COUNT = 3000

type Tap = Parameters<typeof buildApp>[0] & { teardown (fn: () => unknown): void, comment (...args: unknown[]): void }

interface Got { text: string, redelivered: boolean, id: string }

/** Cuts the connection: from the server (terminate) or under it (the TCP socket destroyed), as a lost network would. */
function cut (conn: ManagedConnection, rng: Rng): void {
  if (rng.float() < 0.5) conn.socket.terminate()
  else (conn.socket as unknown as { _socket: Socket })._socket.destroy()
}

async function server (t: Tap, rng: Rng | undefined): Promise<{ app: FastifyInstance, got: Got[], routed: Got[] }> {
  const got: Got[] = []
  const routed: Got[] = []
  let nextCut = rng === undefined ? Infinity : rng.int(5, 200)
  let counted = 0
  const maybeCut = (conn: ManagedConnection): void => {
    if (++counted < nextCut) return
    nextCut = counted + rng!.int(5, 300)
    cut(conn, rng!)
  }
  const app = await buildApp(t, { reconnect: { secret: SECRET } }, app => {
    app.get('/ws', { websocket: true, config: { ws: { reconnect: {} } } }, (_socket, request) => {
      const conn = request.wsConnection!
      conn.on('message', (data, _isBinary, redelivered) => {
        got.push({ text: data.toString(), redelivered, id: conn.id })
        maybeCut(conn)
      })
    })
    app.get('/routed', {
      websocket: true,
      config: {
        ws: {
          reconnect: {},
          messages: defineMessages({
            n: {
              handler: (data, { conn, redelivered }) => {
                routed.push({ text: String(data), redelivered, id: conn.id })
                maybeCut(conn)
              }
            }
          })
        }
      }
    }, () => {})
  })
  return { app, got, routed }
}

function client (t: Tap, url: string, options: ClientOptions = {}): StabilizerClient {
  // 'stabilizer': nothing is sent before the welcome, so no cut falls between a welcome and its arrival (PROTOCOL.md)
  const c = new StabilizerClient(url, { WebSocket, protocol: 'stabilizer', reconnect: { initialDelay: 1, maxDelay: 20 }, heartbeat: false, maxQueueSize: COUNT + 10, ...options })
  t.teardown(() => c.close())
  return c
}

/** Sends `count` messages made by `make`, in bursts with a turn of the event loop between them, so cuts land anywhere. */
async function sendAll (c: StabilizerClient, rng: Rng, count: number, make: (i: number) => unknown, paced = false): Promise<void> {
  for (let i = 1; i <= count;) {
    const burst = rng.int(1, 40)
    for (let j = 0; j < burst && i <= count; j++, i++) c.send(make(i) as string)
    await new Promise(resolve => paced ? setTimeout(resolve, 1) : setImmediate(resolve))
  }
}

const expected = (count: number): string[] => Array.from({ length: count }, (_, i) => `m${i + 1}`)

test(`every send reaches the route's listener exactly once, in order, while the server cuts the socket at random (seed ${SEED})`, async (t) => {
  const rng = new Rng(SEED)
  const { app, got } = await server(t, rng)
  const c = client(t, urlOf(app, '/ws'))
  let resumed = 0
  c.on('resumed', () => { resumed++ })
  c.on('resumeFailed', info => t.fail(`resume failed: ${info.reason}`))
  await c.connect()
  // and at moments of their own, whatever the listener sees
  const cutter = setInterval(() => {
    const conn = app.wsManager.connections().next().value
    if (conn !== undefined && c.state === 'open' && rng.float() < 0.5) cut(conn, rng)
  }, 10)
  await sendAll(c, rng, COUNT, i => `m${i}`, true)
  clearInterval(cutter)
  await until(() => got.length >= COUNT && c.unacknowledged === 0 && c.queued === 0, 20_000, 'every message, acknowledged')
  t.comment(`seed ${SEED}: ${resumed} resumes`)
  t.ok(resumed > 10, 'the socket was cut again and again')
  t.same(got.map(g => g.text), expected(COUNT), 'each exactly once, in order')
  t.equal(new Set(got.map(g => g.id)).size, 1, 'all in one session')
  t.notOk(got.some(g => g.redelivered), 'nothing marked redelivered: the session was saved each time')
})

test(`the same for a route's typed message handlers (seed ${SEED})`, async (t) => {
  const rng = new Rng(SEED + 1)
  const { app, routed } = await server(t, rng)
  const c = client(t, urlOf(app, '/routed'))
  await c.connect()
  await sendAll(c, rng, 1000, i => ({ type: 'n', data: `m${i}` }))
  await until(() => routed.length >= 1000 && c.unacknowledged === 0, 20_000, 'every message, acknowledged')
  t.same(routed.map(g => g.text), expected(1000), 'each exactly once, in order')
  t.notOk(routed.some(g => g.redelivered))
})

test('acknowledgements: at once after 64 frames, within ~200 ms for fewer; the welcome carries the count', async (t) => {
  const { app, got } = await server(t, undefined)
  const frames: string[] = []
  const ws = new WebSocket(urlOf(app, '/ws?v=2'))
  ws.on('message', data => frames.push(data.toString()))
  t.teardown(() => ws.terminate())
  await until(() => frames.length === 1, 2000, 'the welcome')
  const welcome = JSON.parse(frames[0])
  t.match(welcome, { type: 'welcome', v: 2, received: 0, resumed: false })
  for (let i = 1; i <= 70; i++) ws.send(`m${i}`)
  await until(() => frames.length >= 2, 2000, 'the first ack')
  t.equal(frames[1], '{"type":"ack","received":64}', 'the 64th frame is acknowledged at once')
  await until(() => frames.length >= 3, 2000, 'the timer ack')
  t.equal(frames[2], '{"type":"ack","received":70}', 'the rest within the ack delay')
  t.equal(got.length, 70)
})

test('a client that keeps few frames (w) gets its ack at half its window; a bad w is as if it said nothing', async (t) => {
  const { app, got } = await server(t, undefined)
  const firstAck = async (query: string, sends: number, headers?: Record<string, string>): Promise<string[]> => {
    const frames: string[] = []
    const ws = new WebSocket(urlOf(app, headers === undefined ? `/ws?v=2${query}` : '/ws'), { headers })
    ws.on('message', data => frames.push(data.toString()))
    t.teardown(() => ws.terminate())
    await until(() => frames.length === 1, 2000, 'the welcome')
    for (let i = 1; i <= sends; i++) ws.send(`m${i}`)
    await until(() => frames.length >= 2, 2000, 'the first ack')
    return frames.slice(1)
  }
  t.same(await firstAck('&w=8', 7), ['{"type":"ack","received":4}'], 'w=8: the 4th frame is acknowledged at once, not 200 ms later with all 7')
  const each = await firstAck('&w=1', 3)
  await until(() => each.length >= 3, 2000, 'three acks')
  t.same(each, [1, 2, 3].map(n => `{"type":"ack","received":${n}}`), 'w=1: every frame')
  t.same(await firstAck('', 3, { 'x-ws-version': '2', 'x-ws-window': '4' }), ['{"type":"ack","received":2}'], 'or in headers: x-ws-window')
  t.same(await firstAck('&w=1000', 70), ['{"type":"ack","received":64}'], 'a large window: at most 64')
  t.same(await firstAck('&w=0', 70), ['{"type":"ack","received":64}'], 'w=0: the default')
  t.same(await firstAck('&w=x', 70), ['{"type":"ack","received":64}'], 'not a number: the default')
  t.equal(got.length, 7 + 3 + 3 + 70 * 3)
})

test('the client says its window (maxQueueSize): a small one never waits on the ack timer for room', async (t) => {
  const { app, got } = await server(t, undefined)
  const urls: string[] = []
  const acks: string[] = []
  class Spy extends WebSocket {
    constructor (url: string, protocols?: string | string[]) {
      urls.push(url)
      super(url, protocols)
      this.on('message', data => { if (data.toString().startsWith('{"type":"ack"')) acks.push(data.toString()) })
    }
  }
  const c = new StabilizerClient(urlOf(app, '/ws'), { WebSocket: Spy as unknown as ClientOptions['WebSocket'], maxQueueSize: 4 })
  t.teardown(() => c.close())
  await c.connect()
  t.match(urls[0], /[?&]v=2&w=4$/, 'v=2 with w=maxQueueSize')
  for (let i = 1; i <= 4; i++) c.send(`m${i}`)
  t.throws(() => c.send('m5'), { code: 'WS_CLIENT_QUEUE_FULL' }, 'four wait')
  await until(() => c.unacknowledged === 0, 2000, 'acknowledged')
  t.same(acks, ['{"type":"ack","received":2}', '{"type":"ack","received":4}'], 'an ack at the 2nd frame and at the 4th, not one by the timer')
  t.equal(got.length, 4)
})

test('a client that does not ask for v=2 gets protocol 1: no count, no acks, the same welcome', async (t) => {
  const { app, got } = await server(t, undefined)
  const frames: string[] = []
  const ws = new WebSocket(urlOf(app, '/ws?v=1'))
  ws.on('message', data => frames.push(data.toString()))
  t.teardown(() => ws.terminate())
  await until(() => frames.length === 1, 2000, 'the welcome')
  t.same(Object.keys(JSON.parse(frames[0])), ['type', 'v', 'clientId', 'token', 'offset', 'resumed'], 'the fields of protocol 1, in its order')
  t.match(JSON.parse(frames[0]), { v: 1 })
  for (let i = 1; i <= 100; i++) ws.send(`m${i}`)
  await until(() => got.length === 100, 2000, 'the messages')
  // an ack would have gone out at once at the 64th, and by the timer for the rest
  await new Promise(resolve => setTimeout(resolve, 300))
  t.equal(frames.length, 1, 'no ack frames')
  const conn = app.wsManager.connections().next().value!
  t.equal(Object.getOwnPropertySymbols(conn).some(s => s.description?.endsWith('upstream') === true && (conn as unknown as Record<symbol, unknown>)[s] !== undefined), false, 'no count kept for it')
})

test('frames held for a listener that never came (the connection dropped first) are sent again, and delivered once', async (t) => {
  const got: string[] = []
  let attach = false
  const app = await buildApp(t, { reconnect: { secret: SECRET } }, app => {
    app.get('/late', { websocket: true, config: { ws: { reconnect: {} } } }, async (_socket, request) => {
      const conn = request.wsConnection!
      // the first connection's handler never gets as far as its listener
      await until(() => attach || !conn.isOpen, 5000, 'the go-ahead')
      if (conn.isOpen) conn.on('message', data => { got.push(data.toString()) })
    })
  })
  const c = client(t, urlOf(app, '/late'))
  await c.connect()
  for (let i = 1; i <= 5; i++) c.send(`m${i}`)
  const first = app.wsManager.connections().next().value!
  await until(() => first.stats.messagesIn >= 5, 2000, 'the frames, held')
  const resumed = new Promise<unknown>(resolve => c.once('resumed', resolve))
  first.socket.terminate()
  await resumed
  attach = true
  c.send('m6')
  await until(() => got.length >= 6 && c.unacknowledged === 0, 5000, 'all six, acknowledged')
  t.same(got, ['m1', 'm2', 'm3', 'm4', 'm5', 'm6'], 'the held ones again, once each, then the new one')
})
