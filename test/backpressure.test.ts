import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import type { DisconnectInfo, WsStabilizerOptions } from '../plugin.ts'
import { buildApp, connect, until, type TestClient } from './helpers.ts'
import { kSlowSince } from '../lib/symbols.ts'

/*
 * Slow consumers: a client that stops reading (its socket paused) fills the server's send
 * buffer; the plugin closes it (1013) or drops its volatile messages, and the others get
 * everything, at full speed.
 */

const CHUNK = Buffer.alloc(256 * 1024, 1)

async function app (t: Parameters<typeof buildApp>[0], backpressure: WsStabilizerOptions['backpressure'], heartbeat: WsStabilizerOptions['heartbeat'] = { interval: 20, timeout: 60_000 }): Promise<FastifyInstance> {
  return await buildApp(t, { backpressure, heartbeat, closeTimeout: 200 }, server => {
    server.get('/ws', { websocket: true, config: { ws: { rooms: ['all'] } } }, () => {})
  })
}

function pause (client: TestClient): void {
  (client.ws as unknown as { _socket: { pause (): void } })._socket.pause()
}

function disconnects (server: FastifyInstance): DisconnectInfo[] {
  const seen: DisconnectInfo[] = []
  server.wsManager.on('disconnect', (_conn, info) => seen.push(info))
  return seen
}

test('a send that would take the buffer past maxBytes closes the slow consumer at once (1013); the others get every message', async (t) => {
  const server = await app(t, { highWaterMark: 256 * 1024, maxBytes: 2 * 1024 * 1024, grace: 60_000 })
  const ended = disconnects(server)
  const slow = await connect(server, '/ws')
  const good = await connect(server, '/ws')
  pause(slow)
  let delivered = 0
  for (let i = 0; i < 64; i++) {
    const result = await server.wsManager.broadcast(CHUNK)
    delivered += result.succeeded
    await new Promise(resolve => setImmediate(resolve))
  }
  await until(() => ended.length === 1, 3000)
  t.match(ended[0], { code: 1013, reason: 'slow consumer', disconnectReason: 'slow_consumer' })
  let got = 0
  while (got < 64) { await good.nextMessage(3000); got++ }
  t.equal(got, 64, 'the reading client got all of them')
  t.ok(delivered < 128, 'nothing more went to the slow one once it was judged')
  t.equal(server.wsManager.getConnectionCount(), 1)
  await good.close()
})

/** Broadcasts chunks until the paused client's connection counts as slow. */
async function fillUntilSlow (server: FastifyInstance): Promise<void> {
  const conn = [...server.wsManager.connections()][0]
  for (let i = 0; i < 48 && conn[kSlowSince] === 0; i++) {
    await server.wsManager.broadcast(CHUNK, { room: 'slow' })
    await new Promise(resolve => setImmediate(resolve))
  }
}

test('a consumer above the high-water mark for longer than grace is closed by the next send', async (t) => {
  // the heartbeat's sweep never runs in this test: only a send can judge
  const server = await app(t, { highWaterMark: 64 * 1024, maxBytes: 64 * 1024 * 1024, grace: 40 }, { interval: 60_000, timeout: 120_000 })
  const ended = disconnects(server)
  const slow = await connect(server, '/ws')
  server.wsManager.join([...server.wsManager.connections()][0].id, 'slow')
  const good = await connect(server, '/ws')
  pause(slow)
  await fillUntilSlow(server)
  await new Promise(resolve => setTimeout(resolve, 60))
  t.same(ended, [], 'nothing judges it while nothing is sent')
  const result = await server.wsManager.broadcast('one more')
  t.equal(result.succeeded, 1, 'only the good client got it')
  await until(() => ended.length === 1, 3000)
  t.match(ended[0], { code: 1013, disconnectReason: 'slow_consumer' })
  t.equal(server.wsManager.getStats().disconnectsTotal.slow_consumer, 1)
  await good.close()
})

test('a consumer above the high-water mark for longer than grace is closed by the sweep when nothing more is sent', async (t) => {
  const server = await app(t, { highWaterMark: 64 * 1024, maxBytes: 64 * 1024 * 1024, grace: 40 })
  const ended = disconnects(server)
  const slow = await connect(server, '/ws')
  server.wsManager.join([...server.wsManager.connections()][0].id, 'slow')
  pause(slow)
  await fillUntilSlow(server)
  await until(() => ended.length === 1, 3000)
  t.match(ended[0], { code: 1013, disconnectReason: 'slow_consumer' })
})

test('policy drop: volatile messages are dropped for a slow consumer and counted; it stays while under the hard cap', async (t) => {
  const server = await app(t, { highWaterMark: 64 * 1024, maxBytes: 64 * 1024 * 1024, grace: 60_000, policy: 'drop' }, { enabled: false })
  const ended = disconnects(server)
  const slow = await connect(server, '/ws')
  const good = await connect(server, '/ws')
  pause(slow)
  for (let i = 0; i < 48; i++) {
    await server.wsManager.broadcast(CHUNK, { volatile: true })
    await new Promise(resolve => setImmediate(resolve))
  }
  let got = 0
  while (got < 48) { await good.nextMessage(3000); got++ }
  const stats = server.wsManager.getStats()
  t.ok(stats.droppedTotal > 0, `dropped ${stats.droppedTotal} for the slow one`)
  t.same(ended, [], 'nobody closed')
  const sent = server.wsManager.send(server.wsManager.getActiveConnections()[0], 'not volatile')
  t.equal(sent, true, 'a message that is not volatile still goes (under the hard cap)')
  await good.close()
  slow.ws.terminate()
})

test('below the high-water mark nothing happens; a consumer that catches up within grace is forgiven', async (t) => {
  const server = await app(t, { highWaterMark: 64 * 1024, maxBytes: 64 * 1024 * 1024, grace: 400 }, { interval: 20, timeout: 60_000 })
  const ended = disconnects(server)
  const client = await connect(server, '/ws')
  pause(client)
  const conn = [...server.wsManager.connections()][0]
  await server.wsManager.broadcast(Buffer.alloc(1024))
  for (let i = 0; i < 24 && conn[kSlowSince] === 0; i++) {
    await server.wsManager.broadcast(CHUNK)
    await new Promise(resolve => setImmediate(resolve))
  }
  t.ok(conn[kSlowSince] > 0, 'now above the high-water mark')
  ;(client.ws as unknown as { _socket: { resume (): void } })._socket.resume()
  await until(() => conn.socket.bufferedAmount === 0, 3000)
  await new Promise(resolve => setTimeout(resolve, 500)) // past the grace: the sweep judges, and finds it caught up
  t.equal(conn[kSlowSince], 0, 'the sweep forgave it')
  t.same(ended, [])
  client.ws.terminate()
})

test('a send while something is buffered, but under the high-water mark, goes out and judges nothing', async (t) => {
  const server = await app(t, { highWaterMark: 16 * 1024 * 1024, maxBytes: 64 * 1024 * 1024, grace: 60 })
  const ended = disconnects(server)
  const client = await connect(server, '/ws')
  pause(client)
  const conn = [...server.wsManager.connections()][0]
  for (let i = 0; i < 200 && conn.socket.bufferedAmount === 0; i++) {
    await server.wsManager.broadcast(CHUNK)
    await new Promise(resolve => setImmediate(resolve))
  }
  const buffered = conn.socket.bufferedAmount
  t.ok(buffered > 0 && buffered <= 16 * 1024 * 1024, `${buffered} bytes buffered, under the mark`)
  t.equal((await server.wsManager.broadcast(CHUNK)).succeeded, 1)
  t.equal(conn[kSlowSince], 0, 'not slow')
  t.same(ended, [])
  client.ws.terminate()
})
