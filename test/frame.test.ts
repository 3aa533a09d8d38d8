import { test } from 'tap'
import WebSocket from 'ws'
import type { FastifyInstance } from 'fastify'
import { buildApp, connect, until, urlOf, type TestClient } from './helpers.ts'
import { canWriteFrame, frame } from '../lib/outbound/frame.ts'

/*
 * Pre-framed writes (lib/outbound/frame.ts): a broadcast is framed once and written straight to each
 * socket, several writes of one tick go out together, and whenever ws would not write
 * exactly those bytes (compression, a busy sender, a client socket) `send()` is used.
 */

async function app (t: Parameters<typeof buildApp>[0], compression: 'none' | 'deflate' = 'none'): Promise<FastifyInstance> {
  return await buildApp(t, { compression }, server => {
    server.get('/ws', { websocket: true }, () => {})
  })
}

async function messages (client: TestClient, count: number): Promise<Array<{ text: string, isBinary: boolean }>> {
  const got: Array<{ text: string, isBinary: boolean }> = []
  for (let i = 0; i < count; i++) {
    const m = await client.nextMessage(3000)
    got.push({ text: Buffer.isBuffer(m.data) ? m.data.toString() : String(m.data), isBinary: m.isBinary })
  }
  return got
}

function rawOf (server: FastifyInstance): { writableCorked: number } {
  const conn = [...server.wsManager.connections()][0]
  return (conn.socket as unknown as { _socket: { writableCorked: number } })._socket
}

test('a broadcast is framed once: text, binary, empty, 126-byte and 64 KiB+ payloads arrive as sent, and are counted', async (t) => {
  const server = await app(t)
  const a = await connect(server, '/ws')
  const b = await connect(server, '/ws')
  t.ok(canWriteFrame([...server.wsManager.connections()][0].socket), 'a plain server socket takes the pre-framed path')
  const big = Buffer.alloc(70 * 1024, 7)
  await server.wsManager.broadcast({ n: 1 })
  await server.wsManager.broadcast(Buffer.from('bin'))
  await server.wsManager.broadcast('')
  await server.wsManager.broadcast('y'.repeat(200))
  await server.wsManager.broadcast(big)
  for (const client of [a, b]) {
    const got = await messages(client, 5)
    t.same(got.slice(0, 4), [
      { text: '{"n":1}', isBinary: false },
      { text: 'bin', isBinary: true },
      { text: '', isBinary: false },
      { text: 'y'.repeat(200), isBinary: false }
    ])
    t.equal(got[4].text.length, big.length)
    t.ok(got[4].isBinary)
  }
  const stats = [...server.wsManager.connections()][0].stats
  t.equal(stats.messagesOut, 5)
  t.equal(stats.bytesOut, 7 + 3 + 0 + 200 + big.length)
  await a.close()
  await b.close()
})

test('the frame is made once per message and reused; the bytes are a final unmasked frame', async (t) => {
  const message = { data: Buffer.from('hello'), binary: false }
  const first = frame(message)
  t.equal(frame(message), first, 'the same frame for the next recipient')
  t.same(first, Buffer.from([0x81, 5, ...Buffer.from('hello')]))
  t.same(frame({ data: Buffer.from([1, 2]), binary: true }), Buffer.from([0x82, 2, 1, 2]))
  const huge = frame({ data: Buffer.alloc(70 * 1024), binary: true })
  t.ok(Array.isArray(huge), 'a payload over 64 KiB is not copied behind its header')
})

test('messages written to a socket in one tick are corked, go out together in order, and the socket is uncorked after the tick', async (t) => {
  const server = await app(t)
  const client = await connect(server, '/ws')
  const raw = rawOf(server)
  const sent: Array<Promise<unknown>> = []
  for (let i = 0; i < 50; i++) sent.push(server.wsManager.broadcast({ i }))
  t.equal(raw.writableCorked, 1, 'the 2nd to 50th writes are held until the end of the tick')
  await Promise.all(sent)
  await new Promise(resolve => setImmediate(resolve))
  t.equal(raw.writableCorked, 0)
  const got = await messages(client, 50)
  t.same(got.map(m => JSON.parse(m.text).i), Array.from({ length: 50 }, (_, i) => i))
  // a send after the tick is written at once again
  await server.wsManager.broadcast({ i: 50 })
  t.equal(raw.writableCorked, 0)
  t.same(JSON.parse(await client.next()), { i: 50 })
  await client.close()
})

test('a socket holds at most its high-water mark (or 64 KiB) corked: a burst to a fast client is never judged slow', async (t) => {
  const server = await buildApp(t, { backpressure: { highWaterMark: 1024, maxBytes: 1_000_000, grace: 60_000, policy: 'drop' } }, s => {
    s.get('/ws', { websocket: true }, () => {})
  })
  const client = await connect(server, '/ws')
  const raw = rawOf(server)
  const results: Array<Promise<{ succeeded: number }>> = []
  for (let i = 0; i < 20; i++) results.push(server.wsManager.broadcast('v'.repeat(300), { volatile: true }))
  t.equal(raw.writableCorked, 0, 'uncorked early, once more than 1024 bytes were held')
  t.same((await Promise.all(results)).map(r => r.succeeded), Array(20).fill(1), 'none dropped')
  t.equal((await messages(client, 20)).length, 20)
  t.equal(server.wsManager.getStats().droppedTotal, 0)
  await client.close()
})

test('a close in the tick after corked messages still sends them first', async (t) => {
  const server = await app(t)
  const client = await connect(server, '/ws')
  const conn = [...server.wsManager.connections()][0]
  server.wsManager.broadcast('one').catch(() => {})
  server.wsManager.broadcast('two').catch(() => {})
  server.wsManager.disconnect(conn.id, 4000, 'bye')
  t.same((await messages(client, 2)).map(m => m.text), ['one', 'two'])
  t.match(await client.closed, { code: 4000, reason: 'bye' })
})

test('with compression on, a client that negotiated deflate gets send() (compressed), in order with everything else', async (t) => {
  const server = await app(t, 'deflate')
  const deflating = await connect(server, '/ws')
  const plain = await connect(server, '/ws', { perMessageDeflate: false })
  const [first, second] = [...server.wsManager.connections()]
  t.notOk(canWriteFrame(first.socket), 'deflate negotiated: never pre-framed')
  t.ok(canWriteFrame(second.socket), 'no deflate on this one')
  const big = 'z'.repeat(4096)
  server.wsManager.broadcast(big).catch(() => {})
  server.wsManager.broadcast('small').catch(() => {})
  server.wsManager.broadcast(Buffer.from('bin')).catch(() => {})
  await server.wsManager.broadcast({ last: true })
  for (const client of [deflating, plain]) {
    t.same(await messages(client, 4), [
      { text: big, isBinary: false }, { text: 'small', isBinary: false }, { text: 'bin', isBinary: true }, { text: '{"last":true}', isBinary: false }
    ])
  }
  await deflating.close()
  await plain.close()
})

test('a sender busy compressing (a message the app sent itself) makes the next write queue behind it', async (t) => {
  const server = await app(t, 'deflate')
  const client = await connect(server, '/ws')
  const conn = [...server.wsManager.connections()][0]
  // the socket's own send of a big message: ws is deflating it now
  conn.socket.send('c'.repeat(8192))
  const sender = (conn.socket as unknown as { _sender: { _state: number } })._sender
  t.not(sender._state, 0, 'the sender is busy')
  t.notOk(canWriteFrame(conn.socket))
  await server.wsManager.broadcast('after')
  t.same((await messages(client, 2)).map(m => m.text.slice(0, 5)), ['ccccc', 'after'])
  await client.close()
})

test('a client-side socket is never pre-framed (its frames must be masked)', async (t) => {
  const server = await app(t)
  const ws = new WebSocket(urlOf(server, '/ws'))
  await new Promise(resolve => ws.once('open', resolve))
  t.notOk(canWriteFrame(ws))
  await until(() => server.wsManager.getConnectionCount() === 1)
  ws.close()
  await until(() => server.wsManager.getConnectionCount() === 0)
})

test('pre-framed bytes count in bufferedAmount, so a client that stops reading is still caught as a slow consumer', async (t) => {
  const server = await buildApp(t, { backpressure: { highWaterMark: 64 * 1024, maxBytes: 512 * 1024, grace: 60_000 } }, s => {
    s.get('/ws', { websocket: true }, () => {})
  })
  const client = await connect(server, '/ws')
  ;(client.ws as unknown as { _socket: { pause (): void } })._socket.pause()
  const conn = [...server.wsManager.connections()][0]
  const chunk = Buffer.alloc(32 * 1024, 1)
  for (let i = 0; i < 200 && conn.isOpen; i++) {
    await server.wsManager.broadcast(chunk).catch(() => {})
    await new Promise(resolve => setImmediate(resolve))
  }
  t.notOk(conn.isOpen, 'closed as a slow consumer')
  t.match(conn.disconnectInfo, { code: 1013, disconnectReason: 'slow_consumer' })
})
