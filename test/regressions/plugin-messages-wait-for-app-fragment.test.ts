import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import type { WebSocket } from 'ws'
import { buildApp, connect, until, type TestClient } from '../helpers.ts'
import { kHeld } from '../../lib/symbols.ts'

/*
 * The app may write a fragmented message on the raw socket (`send(…, { fin: false })`).
 * ws turns any data frame sent until the last fragment into a continuation of that message,
 * so a plugin message sent meanwhile must wait, in order, until the app's message ends; if
 * it never ends, the waiting messages are not delivered and are counted as such.
 */

async function app (t: Parameters<typeof buildApp>[0], compression: 'none' | 'deflate' = 'none', backpressure = {}): Promise<{ server: FastifyInstance, sockets: WebSocket[] }> {
  const sockets: WebSocket[] = []
  // message-mode heartbeat: the client's {"type":"ping"} is answered by a protocol frame written like any message
  const server = await buildApp(t, { compression, backpressure, heartbeat: { mode: 'message', interval: 60_000, timeout: 120_000 } }, s => {
    s.get('/ws', { websocket: true }, socket => { sockets.push(socket) })
  })
  return { server, sockets }
}

async function texts (client: TestClient, count: number): Promise<string[]> {
  const got: string[] = []
  for (let i = 0; i < count; i++) got.push((await client.nextMessage(3000)).data.toString())
  return got
}

for (const compression of ['none', 'deflate'] as const) {
  test(`compression ${compression}: plugin messages sent while the app's fragmented message is open arrive after it, each its own message, in order`, async (t) => {
    const { server, sockets } = await app(t, compression)
    const client = await connect(server, '/ws')
    await until(() => sockets.length === 1)
    const conn = [...server.wsManager.connections()][0]
    sockets[0].send('part1', { fin: false })
    const result = await server.wsManager.broadcast('plugin broadcast')
    t.same([result.succeeded, result.failed], [1, 0], 'accepted for delivery, after the app\'s message')
    t.equal(server.wsManager.send(conn.id, { n: 2 }), true)
    server.wsManager.broadcast('x'.repeat(2048)).catch(() => {})
    client.send({ type: 'ping' })
    await until(() => conn[kHeld]?.messages.length === 4, 2000, 'the pong held too')
    t.equal(conn.stats.messagesOut, 0, 'nothing written yet: nothing counted as sent')
    t.ok(await client.silentFor(30), 'the client has no whole message yet')
    sockets[0].send('-mid-', { fin: false })
    t.equal(conn[kHeld]?.messages.length, 4, 'a middle fragment: still held')
    sockets[0].send('part2', { fin: true })
    const got = await texts(client, 5)
    t.same(got.slice(0, 4), ['part1-mid-part2', 'plugin broadcast', '{"n":2}', 'x'.repeat(2048)])
    t.match(JSON.parse(got[4]), { type: 'pong' })
    t.equal(conn.stats.messagesOut, 3, 'counted once written')
    // the socket is back to normal: later messages go straight out
    await server.wsManager.broadcast('later')
    sockets[0].send('app')
    t.same(await texts(client, 2), ['later', 'app'])
    t.equal(server.wsManager.getStats().failedDeliveriesTotal, 0)
    await client.close()
  })
}

test('a fragmented message the app never ends: the messages held behind it are not delivered and are counted as failed deliveries', async (t) => {
  const { server, sockets } = await app(t)
  const client = await connect(server, '/ws')
  await until(() => sockets.length === 1)
  const conn = [...server.wsManager.connections()][0]
  sockets[0].send('part1', { fin: false })
  await server.wsManager.broadcast('one')
  await server.wsManager.broadcast('two')
  client.send({ type: 'ping' })
  await until(() => conn[kHeld]?.messages.length === 3, 2000, 'the pong held too')
  server.wsManager.disconnect(conn.id, 4000, 'bye')
  t.match(await client.closed, { code: 4000 })
  t.equal(client.drain().length, 0, 'the client never saw them')
  const stats = server.wsManager.getStats()
  t.equal(stats.failedDeliveriesTotal, 2, 'both counted as not delivered (the pong is no delivery)')
  t.equal(stats.messagesOut, 0, 'and not as sent')
})

test('messages held behind an open fragment count as waiting on the socket: past backpressure.maxBytes the connection is closed (1013)', async (t) => {
  const { server, sockets } = await app(t, 'none', { maxBytes: 16 * 1024, highWaterMark: 8 * 1024, grace: 60_000 })
  const client = await connect(server, '/ws')
  await until(() => sockets.length === 1)
  sockets[0].send('part1', { fin: false })
  const results = []
  for (let i = 0; i < 3; i++) results.push(await server.wsManager.broadcast(Buffer.alloc(6 * 1024)).catch((err: { result: unknown }) => err.result))
  t.same(results.map(r => (r as { succeeded: number }).succeeded), [1, 1, 0], 'the third would take it past 16 KiB')
  t.match(await client.closed, { code: 1013 })
  t.equal(server.wsManager.getStats().failedDeliveriesTotal, 1 + 2, 'one refused, two held and never delivered')
})
