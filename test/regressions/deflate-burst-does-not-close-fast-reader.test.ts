import { test } from 'tap'
import { randomBytes } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import type { DisconnectInfo, WsStabilizerOptions } from '../../plugin.ts'
import { buildApp, connect, until } from '../helpers.ts'

/*
 * With `compression: 'deflate'`, ws queues a burst of messages for zlib, which compresses
 * them later on its thread pool. That queue says how far the server's compression is
 * behind, not how fast the client reads: a client is judged slow by what waits on its
 * socket (`backpressure.maxBytes`, `highWaterMark`), and the compression queue has its own
 * bound (`backpressure.maxDeflateBytes`).
 */

async function app (t: Parameters<typeof buildApp>[0], backpressure: WsStabilizerOptions['backpressure']): Promise<{ server: FastifyInstance, ended: DisconnectInfo[] }> {
  const server = await buildApp(t, { compression: 'deflate', backpressure, heartbeat: { interval: 20, timeout: 60_000 } }, s => {
    s.get('/ws', { websocket: true }, () => {})
  })
  const ended: DisconnectInfo[] = []
  server.wsManager.on('disconnect', (_conn, info) => ended.push(info))
  return { server, ended }
}

/** A large, compressible message: 16 KiB of JSON. */
function message (i: number): object {
  return { i, rows: Array.from({ length: 400 }, (_, row) => ({ row, status: 'ok', note: 'nothing to report' })) }
}

test('a client that reads fine is not closed when a burst of large messages waits for zlib, however small maxBytes is', async (t) => {
  const { server, ended } = await app(t, { maxBytes: 64 * 1024, highWaterMark: 32 * 1024, grace: 50 })
  const client = await connect(server, '/ws')
  const conn = [...server.wsManager.connections()][0]
  const count = 200
  let succeeded = 0
  for (let i = 0; i < count; i++) succeeded += (await server.wsManager.broadcast(message(i))).succeeded
  t.ok(conn.socket.bufferedAmount > 64 * 1024, `${conn.socket.bufferedAmount} bytes wait for zlib, far more than maxBytes`)
  t.equal(succeeded, count, 'every message handed to the socket')
  const got: number[] = []
  for (let i = 0; i < count; i++) got.push((await client.json(3000)).i)
  t.same(got, Array.from({ length: count }, (_, i) => i), 'all of them, in order')
  // and a few heartbeat sweeps later, still open
  await new Promise(resolve => setTimeout(resolve, 80))
  t.same(ended, [], 'nobody closed')
  t.equal(conn.isOpen, true)
  await client.close()
})

test('past backpressure.maxDeflateBytes the compression queue closes the connection (1013) at once', async (t) => {
  const { server, ended } = await app(t, { maxBytes: 64 * 1024, maxDeflateBytes: 512 * 1024, grace: 60_000 })
  const client = await connect(server, '/ws')
  const results: number[] = []
  for (let i = 0; i < 64; i++) results.push((await server.wsManager.broadcast(message(i)).catch((err: { result: { succeeded: number } }) => err.result)).succeeded)
  t.ok(results.indexOf(0) > 1, 'the first messages were taken')
  t.same(results.slice(results.indexOf(0)), Array(64 - results.indexOf(0)).fill(0), 'nothing after the one that would pass the bound')
  t.match(await client.closed, { code: 1013 })
  await until(() => ended.length === 1)
  t.match(ended[0], { code: 1013, disconnectReason: 'slow_consumer' })
})

test('with deflate, a client that stops reading is still closed (1013) once its socket holds more than maxBytes', async (t) => {
  const { server, ended } = await app(t, { maxBytes: 512 * 1024, highWaterMark: 128 * 1024, grace: 60_000 })
  const client = await connect(server, '/ws')
  ;(client.ws as unknown as { _socket: { pause (): void } })._socket.pause()
  const conn = [...server.wsManager.connections()][0]
  // random bytes do not compress: what zlib writes out is as big as what came in
  const chunk = randomBytes(64 * 1024)
  for (let i = 0; i < 2000 && conn.isOpen; i++) {
    await server.wsManager.broadcast(chunk).catch(() => {})
    await new Promise(resolve => setTimeout(resolve, 1))
  }
  await until(() => ended.length === 1)
  t.match(ended[0], { code: 1013, disconnectReason: 'slow_consumer' })
  client.ws.terminate()
})
