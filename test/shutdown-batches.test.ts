import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { MemoryAdapter, MemoryBus, type WsStabilizerOptions } from '../plugin.ts'
import { buildApp, connect, type TestClient } from './helpers.ts'

/*
 * `shutdown.batchSize` / `batchInterval`: fastify.close() closes the connections a batch at
 * a time, so that the clients of an instance being replaced come back elsewhere spread out
 * instead of all at once (a rolling restart, BENCHMARKS.md). The ones still waiting stay
 * fully connected: they get what the other instances send.
 */

async function app (t: Parameters<typeof buildApp>[0], options: WsStabilizerOptions): Promise<FastifyInstance> {
  return await buildApp(t, options, app => { app.get('/ws', { websocket: true }, () => {}) })
}

async function clients (app: FastifyInstance, n: number): Promise<TestClient[]> {
  return await Promise.all(Array.from({ length: n }, () => connect(app, '/ws')))
}

/** What is still registered on the turn after a connection was closed. */
function countAfterEachClose (app: FastifyInstance): number[] {
  const counts: number[] = []
  app.wsManager.on('disconnect', () => setImmediate(() => counts.push(app.wsManager.getConnectionCount())))
  return counts
}

test('fastify.close() closes batchSize connections at a time, batchInterval apart; the waiting ones get what other instances send', async (t) => {
  const bus = new MemoryBus()
  const a = await app(t, { adapter: new MemoryAdapter({ bus }), shutdown: { batchSize: 2, batchInterval: 100 } })
  const b = await app(t, { adapter: new MemoryAdapter({ bus }) })
  const all = await clients(a, 5)
  const closedAt: number[] = []
  for (const c of all) c.closed.then(() => closedAt.push(Date.now()), () => {})
  const remaining = countAfterEachClose(a)
  let sent = false
  a.wsManager.on('disconnect', () => {
    // the first batch is over: the other instance sends to everyone
    if (!sent && a.wsManager.getConnectionCount() === 3) {
      sent = true
      b.wsManager.broadcast({ between: 'batches' }).catch(() => {})
    }
  })
  const started = Date.now()
  const report = a.wsManager.gracefulShutdown()
  await a.close()
  t.match(await report, { closedCount: 5, terminatedCount: 0, failedCount: 0 })
  await Promise.all(all.map(c => c.closed))
  t.same(remaining, [3, 3, 1, 1, 0], 'two, two, then the last one')
  t.ok((await report).durationMs >= 195, `two pauses of 100 ms (${(await report).durationMs} ms)`)
  closedAt.sort((x, y) => x - y)
  t.ok(closedAt[4] - started >= 195, 'the last client saw its close after both pauses')
  for (const [i, c] of all.entries()) {
    const got = (await c.closed).code
    t.equal(got, 1012, `client ${i}: 1012`)
  }
  // the first two left before the broadcast; the three that waited got it before their close
  const received = await Promise.all(all.map(c => c.silentFor(0).then(silent => !silent)))
  t.equal(received.filter(Boolean).length, 3, 'the three waiting clients got the other instance\'s message')
})

test('batchSize 0 closes every connection at once; a batch larger than the registry is one batch', async (t) => {
  for (const batchSize of [0, 10]) {
    const a = await app(t, { shutdown: { batchSize, batchInterval: 5000 } })
    const all = await clients(a, 3)
    const remaining = countAfterEachClose(a)
    const started = Date.now()
    await a.close()
    t.same(remaining, [0, 0, 0], `batchSize ${batchSize}: all in the same turn`)
    t.ok(Date.now() - started < 5000, `batchSize ${batchSize}: no pause`)
    for (const c of all) t.equal((await c.closed).code, 1012)
  }
})

test('gracefulShutdown() takes the batches as options too, and a client that does not answer is still terminated on time', async (t) => {
  const a = await app(t, { shutdown: { timeout: 150 }, closeTimeout: 10_000 })
  const all = await clients(a, 3)
  ;(all[2].ws as unknown as { _socket: { pause (): void } })._socket.pause()
  const remaining = countAfterEachClose(a)
  const report = await a.wsManager.gracefulShutdown({ batchSize: 1, batchInterval: 50 })
  t.match(report, { closedCount: 2, terminatedCount: 1 })
  t.ok(report.durationMs >= 245, `two pauses of 50 ms and the 150 ms timeout after the last batch (${report.durationMs} ms)`)
  t.same(remaining.slice(0, 2), [2, 1])
  all[2].ws.terminate()
  await a.close()
})
