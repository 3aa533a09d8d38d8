import { test, type Test as Tap } from 'tap'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import type { WsStabilizerOptions } from '../plugin.ts'
import { buildApp, connect, until, type TestClient } from './helpers.ts'
import { OP, RawClient } from './fuzz/raw-client.ts'

/*
 * Write coalescing (`flush.delay`): a socket's writes within the delay leave together, in
 * one write, in order; backpressure, slow consumers, close and shutdown work as without it.
 */

const nextTurn = async (): Promise<void> => await new Promise(resolve => setImmediate(resolve))

async function app (t: Tap, options: WsStabilizerOptions, route: Record<string, unknown> = {}): Promise<FastifyInstance> {
  return await buildApp(t, { heartbeat: { enabled: false }, closeTimeout: 200, ...options }, server => {
    server.get('/ws', { websocket: true, config: { ws: { rooms: ['all'], ...route } } }, () => {})
    server.get('/now', { websocket: true, config: { ws: { rooms: ['all'], flush: { delay: 0 } } } }, () => {})
  })
}

function rawSocket (app: FastifyInstance): { writableCorked: number, writableLength: number } {
  const conn = [...app.wsManager.connections()][0]
  return (conn.socket as unknown as { _socket: { writableCorked: number, writableLength: number } })._socket
}

async function raw (app: FastifyInstance, path: string): Promise<{ client: RawClient, reads: () => number }> {
  const client = await RawClient.open((app.server.address() as AddressInfo).port, path)
  let reads = 0
  client.socket.on('data', () => { reads++ })
  return { client, reads: () => reads }
}

test('messages sent in different turns within the delay leave in one write, in order, as valid frames', async (t) => {
  const server = await app(t, { flush: { delay: 50 } })
  const { client, reads } = await raw(server, '/ws')
  t.teardown(() => client.destroy())
  await until(() => server.wsManager.getConnectionCount() === 1)
  for (let i = 0; i < 5; i++) {
    server.wsManager.broadcast({ i })
    await nextTurn()
  }
  t.ok(rawSocket(server).writableCorked > 0, 'held on the socket')
  t.ok(rawSocket(server).writableLength > 0)
  t.equal(client.frames.length, 0, 'nothing has left yet')
  await client.until(() => client.frames.length === 5, 2000)
  t.same(client.frames.map(f => JSON.parse(f.payload.toString()).i), [0, 1, 2, 3, 4], 'in order')
  t.ok(client.frames.every(f => f.fin && !f.rsv1 && f.opcode === OP.TEXT), 'whole, uncompressed text frames')
  t.equal(reads(), 1, 'one write reached the client')
  t.equal(rawSocket(server).writableCorked, 0, 'uncorked when the window closed')
})

test('a route may turn it on or off over the plugin\'s, and off nothing is held', async (t) => {
  const server = await app(t, { flush: { delay: 50 } })
  const { client } = await raw(server, '/now')
  t.teardown(() => client.destroy())
  await until(() => server.wsManager.getConnectionCount() === 1)
  server.wsManager.broadcast('at once')
  t.equal(rawSocket(server).writableCorked, 0, 'the route\'s delay 0 wins')
  await client.until(() => client.frames.length === 1, 2000)

  const other = await app(t, {}, { flush: { delay: 30 } })
  const { client: late } = await raw(other, '/ws')
  t.teardown(() => late.destroy())
  await until(() => other.wsManager.getConnectionCount() === 1)
  other.wsManager.broadcast('later')
  t.ok(rawSocket(other).writableCorked > 0, 'the route\'s delay over the plugin\'s default')
  await late.until(() => late.frames.length === 1, 2000)
})

test('more than the high-water mark held in the window goes out at once', async (t) => {
  const server = await app(t, { flush: { delay: 1000 }, backpressure: { highWaterMark: 1024 } })
  const { client } = await raw(server, '/ws')
  t.teardown(() => client.destroy())
  await until(() => server.wsManager.getConnectionCount() === 1)
  server.wsManager.broadcast('small')
  t.ok(rawSocket(server).writableCorked > 0)
  server.wsManager.broadcast(Buffer.alloc(2048, 7))
  t.equal(rawSocket(server).writableCorked, 0, 'uncorked before the window closed')
  await client.until(() => client.frames.length === 2, 500)
  t.same(client.frames.map(f => f.payload.length), [5, 2048])
})

test('a client that stops reading is still a slow consumer (1013): held bytes count', async (t) => {
  const server = await app(t, { flush: { delay: 5 }, backpressure: { highWaterMark: 64 * 1024, maxBytes: 512 * 1024, grace: 60_000 } })
  const slow = await connect(server, '/ws')
  ;(slow.ws as unknown as { _socket: { pause (): void } })._socket.pause()
  let failed = 0
  for (let i = 0; i < 200 && failed === 0; i++) {
    failed += await server.wsManager.broadcast(Buffer.alloc(64 * 1024, 1)).then(r => r.failed, (err: { result: { failed: number } }) => err.result.failed)
    await nextTurn()
  }
  t.equal(failed, 1, 'refused once the buffer would pass maxBytes')
  ;(slow.ws as unknown as { _socket: { resume (): void } })._socket.resume()
  t.match(await slow.closed, { code: 1013 })
})

test('with permessage-deflate, compressed and plain messages keep their order in the window', async (t) => {
  const server = await app(t, { flush: { delay: 20 }, compression: 'deflate' })
  const client = await connect(server, '/ws', { perMessageDeflate: true })
  const sent: string[] = []
  for (let i = 0; i < 20; i++) {
    const text = i % 2 === 0 ? `small ${i}` : `${i} `.repeat(600)
    sent.push(text)
    server.wsManager.broadcast(text)
    if (i % 3 === 0) await nextTurn()
  }
  const got: string[] = []
  for (let i = 0; i < 20; i++) got.push(await client.next())
  t.same(got, sent)
  await client.close()
})

test('a close in the window comes after what was sent before it', async (t) => {
  const server = await app(t, { flush: { delay: 30 } })
  const client = await connect(server, '/ws')
  await until(() => server.wsManager.getConnectionCount() === 1)
  const id = [...server.wsManager.connections()][0].id
  server.wsManager.broadcast('first')
  server.wsManager.send(id, 'second')
  server.wsManager.disconnect(id, 4000, 'bye')
  t.equal(await client.next(), 'first')
  t.equal(await client.next(), 'second')
  t.match(await client.closed, { code: 4000, reason: 'bye' })
})

test('fastify.close() sends what is held and the close frames at once: clients answer within a timeout shorter than the delay', async (t) => {
  const server = await app(t, { flush: { delay: 1000 }, shutdown: { timeout: 300 } })
  const clients: TestClient[] = []
  for (let i = 0; i < 3; i++) clients.push(await connect(server, '/ws'))
  await until(() => server.wsManager.getConnectionCount() === 3)
  server.wsManager.broadcast('last words')
  const report = await server.wsManager.gracefulShutdown()
  t.match(report, { closedCount: 3, terminatedCount: 0 }, 'every client answered the close frame in time')
  for (const client of clients) {
    t.equal(await client.next(), 'last words')
    t.match(await client.closed, { code: 1012 })
  }
})

test('flush.delay is validated, naming the field', async (t) => {
  for (const delay of [-1, 1001, 'soon']) {
    await t.rejects(buildApp(t, { flush: { delay } } as unknown as WsStabilizerOptions), { code: 'FST_WS_INVALID_OPTIONS', message: /flush\.delay/ })
  }
  await t.rejects(buildApp(t, {}, server => {
    server.get('/ws', { websocket: true, config: { ws: { flush: { delay: -5 } } } }, () => {})
  }), /flush\.delay/)
})
