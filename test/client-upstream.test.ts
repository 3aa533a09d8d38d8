import { test } from 'tap'
import WebSocket, { WebSocketServer } from 'ws'
import type { Socket } from 'node:net'
import { StabilizerClient, type ClientError, type ClientOptions } from '../lib/client/index.ts'
import { Outbox } from '../lib/client/outbox.ts'
import { buildApp, until, urlOf } from './helpers.ts'

/*
 * The client's side of protocol 2: what it keeps, what an ack drops, the bound it shares
 * with the queue, what goes into a fresh session, and servers that do not number (protocol
 * 1, plain routes) or that send a broken ack. Bare ws servers play the frames the plugin
 * never sends.
 */

type Tap = Parameters<typeof buildApp>[0] & { teardown (fn: () => unknown): void }

function client (t: Tap, url: string, options: ClientOptions = {}): StabilizerClient {
  const c = new StabilizerClient(url, { WebSocket, heartbeat: false, reconnect: { initialDelay: 1, maxDelay: 5 }, ...options })
  t.teardown(() => c.close())
  return c
}

interface Bare { url: string, urls: string[], got: string[], sockets: WebSocket[] }

async function bareServer (t: Tap, onConnection: (socket: WebSocket, index: number) => void): Promise<Bare> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' })
  const bare: Bare = { url: '', urls: [], got: [], sockets: [] }
  wss.on('connection', (socket, request) => {
    bare.urls.push(request.url!)
    bare.sockets.push(socket)
    socket.on('message', data => bare.got.push(data.toString()))
    onConnection(socket, bare.sockets.length - 1)
  })
  t.teardown(() => new Promise(resolve => {
    for (const socket of wss.clients) socket.terminate()
    wss.close(resolve)
  }))
  await new Promise(resolve => wss.once('listening', resolve))
  bare.url = `ws://127.0.0.1:${(wss.address() as { port: number }).port}/`
  return bare
}

const welcome = (v: number, extra: object = {}): string => JSON.stringify({ type: 'welcome', v, clientId: 'c1', token: 'tok', offset: 0, resumed: false, ...extra })

test('Outbox: acks drop what they cover, in order; a count past what was sent is refused', async (t) => {
  const box = new Outbox()
  for (let i = 1; i <= 3000; i++) box.push(`m${i}`)
  t.equal(box.sent, 3000)
  t.ok(box.ack(2000))
  t.equal(box.size, 1000)
  t.same(box.pending().slice(0, 2), ['m2001', 'm2002'], 'compacted, still in order')
  t.ok(box.ack(1500), 'an older ack changes nothing')
  t.equal(box.size, 1000)
  t.notOk(box.ack(3001), 'more than was sent')
  t.equal(box.acked, 2000)
  t.ok(box.resume(1990), 'a resume below the last ack')
  t.same([box.acked, box.sent, box.size], [1990, 2990, 1000], 'numbers the kept frames on from it')
  t.ok(box.resume(2000))
  t.equal(box.size, 990)
  t.notOk(box.resume(5000))
  box.restart()
  t.same([box.acked, box.sent, box.size], [0, 990, 990], 'a fresh session: the kept frames are its first')
  box.clear()
  t.same([box.sent, box.size], [0, 0])
})

test('the client keeps what is not acknowledged, an ack drops it, the bound is shared with the queue', async (t) => {
  const bare = await bareServer(t, socket => { socket.send(welcome(2, { received: 0 })) })
  const c = client(t, bare.url, { maxQueueSize: 3 })
  await c.connect()
  t.match(bare.urls[0], /[?&]v=2\b/, 'v=2 asked for')
  c.send('a')
  c.send('b')
  c.send('{"type":"ping"}')
  t.equal(c.unacknowledged, 2, 'heartbeat-like frames are not kept: the server does not count them')
  c.send({ n: 3 })
  t.throws(() => c.send('d'), { code: 'WS_CLIENT_QUEUE_FULL' }, 'maxQueueSize frames wait for an ack')
  await until(() => bare.got.length === 4, 2000, 'the frames')
  bare.sockets[0].send('{"type":"ack","received":2}')
  await until(() => c.unacknowledged === 1, 2000, 'the ack')
  c.send('d')
  const errors: string[] = []
  c.on('error', err => errors.push((err as ClientError).code))
  bare.sockets[0].send('{"type":"ack","received":99}')
  await until(() => errors.length === 1, 2000, 'the error')
  t.same(errors, ['WS_CLIENT_BAD_FRAME'], 'an ack of more than was sent is a bad frame')
  t.equal(c.unacknowledged, 2, 'and drops nothing')
})

test('a protocol 1 server (welcome v 1) and a plain route: nothing is kept', async (t) => {
  const v1 = await bareServer(t, socket => { socket.send(welcome(1)) })
  const c = client(t, v1.url)
  await c.connect()
  c.send('x')
  await until(() => v1.got.length === 1, 2000, 'the frame')
  await until(() => c.clientId === 'c1', 2000, 'the welcome')
  c.send('y')
  t.equal(c.unacknowledged, 0)

  const plain = await bareServer(t, socket => { socket.once('message', () => socket.send('hello')) })
  const p = client(t, plain.url)
  await p.connect()
  p.send('x')
  t.equal(p.unacknowledged, 1, 'kept until the server shows what it is')
  await new Promise(resolve => p.once('message', resolve))
  t.equal(p.unacknowledged, 0, 'the first frame was no welcome: nothing is counted')
  p.send('y')
  t.equal(p.unacknowledged, 0)

  const off = client(t, v1.url, { protocol: 'plain' })
  await off.connect()
  t.notMatch(v1.urls[v1.urls.length - 1], /v=2/, 'protocol: plain asks for nothing')
})

for (const [name, again, event] of [
  ['a resume on a server that went back to protocol 1', welcome(1, { resumed: true, replayed: 0 }), 'resumed'],
  ['a failed resume on a server that went back to protocol 1', welcome(1, { resumeFailed: 'unknown_session' }), 'resumeFailed'],
  ['a resumed welcome of v 2 without received (taken as 0)', welcome(2, { resumed: true }), 'resumed']
] as const) {
  test(`${name}: the kept frames go out once more`, async (t) => {
    const bare = await bareServer(t, (socket, index) => { socket.send(index === 0 ? welcome(2, { received: 0 }) : again) })
    const c = client(t, bare.url)
    await c.connect()
    c.send('kept')
    await until(() => bare.got.length === 1, 2000, 'the frame')
    const info = new Promise<{ resent?: number }>(resolve => c.once(event, resolve as never))
    ;(bare.sockets[0] as unknown as { _socket: Socket })._socket.destroy()
    const got = await info
    if (event === 'resumeFailed') t.equal(got.resent, 0, 'protocol 1: nothing counted as resent')
    t.match(bare.urls[1], /sent=1/)
    await until(() => bare.got.length === 2, 2000, 'the frame again')
    t.same(bare.got, ['kept', 'kept'])
    t.equal(c.unacknowledged, again.includes('"v":1') ? 0 : 1, 'forgotten on protocol 1, kept on 2')
  })
}

test('resumeFailed: the unacknowledged frames go into the fresh session (at-least-once), counted from 0', async (t) => {
  const got: string[] = []
  let cutAt = 5
  const app = await buildApp(t, { reconnect: { secret: 'client-upstream-secret-0123456789' } }, app => {
    app.get('/ws', { websocket: true, config: { ws: { reconnect: { maxDisconnect: 1 } } } }, (_socket, request) => {
      const conn = request.wsConnection!
      conn.on('message', data => {
        got.push(data.toString())
        if (got.length === cutAt) {
          cutAt = 0
          conn.socket.terminate()
        }
      })
    })
  })
  const c = client(t, urlOf(app, '/ws'), { reconnect: { initialDelay: 20, maxDelay: 20 } })
  await c.connect()
  const failed = new Promise<{ reason: string, resent: number }>(resolve => c.once('resumeFailed', resolve))
  for (let i = 1; i <= 10; i++) c.send(`m${i}`)
  const info = await failed
  t.equal(info.reason, 'unknown_session', 'the session expired meanwhile')
  t.equal(info.resent, 10, 'none was acknowledged: all ten go again')
  await until(() => got.length >= 15 && c.unacknowledged === 0, 2000, 'the frames, acknowledged')
  t.same(got.slice(-10), Array.from({ length: 10 }, (_, i) => `m${i + 1}`), 'into the new session, in order')
})
