import { test } from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import type { FastifyInstance } from 'fastify'
import { RedisAdapter } from '../lib/adapters/redis.ts'
import { AdapterUnavailableError, ClusterTimeoutError, InvalidOptionsError, MemoryAdapter, MemoryBus, ShutdownError, resolveOptions, type WsStabilizerOptions } from '../plugin.ts'
import { buildApp, connect, until } from './helpers.ts'
import { redisAvailable, startRedis } from './redis-server.ts'

/*
 * wsManager.cluster's operations where an instance fails them: one alone (answers at once),
 * an instance that does not answer (a stopped child process), one that answers without being
 * expected, Redis down, the app closing while ops wait. The exact counts across live
 * instances are in the adapter contract (test/adapter-contract.ts), for both adapters.
 */

const skip = !redisAvailable() && 'redis-server is not installed'

/** The loader tap runs TypeScript with, and nothing else of its own. */
const execArgv = process.execArgv.filter(arg => arg.includes('@tapjs/typescript') || arg === '--enable-source-maps')

const routes = (app: FastifyInstance): void => {
  app.get('/ws', { websocket: true, config: { ws: { identify: r => ({ userId: (r.query as { user?: string }).user }) } } }, () => {})
}

async function instance (t: Parameters<typeof buildApp>[0], options: WsStabilizerOptions): Promise<FastifyInstance> {
  return await buildApp(t, options, routes)
}

async function others (app: FastifyInstance, n: number): Promise<void> {
  await until(async () => (await app.wsManager.adapter.presence.remoteInstances()).length === n, 3000, `${n} other instances in the presence`)
}

test('one instance alone answers at once, with nothing to wait for', async (t) => {
  const app = await instance(t, {})
  const client = await connect(app, '/ws?user=al')
  const id = app.wsManager.getUserConnections('al')[0].id
  t.same(await app.wsManager.cluster.broadcast('hi'), { instances: 1, answered: 1, total: 1, succeeded: 1, failed: 0, partial: false })
  t.equal(await client.next(), 'hi')
  t.equal(app.wsManager.getStats().broadcastsTotal, 1, 'counted as a broadcast')
  t.equal(await app.wsManager.cluster.send('nobody', 'x'), false)
  t.equal(await app.wsManager.cluster.disconnect('nobody'), false)
  t.equal(await app.wsManager.cluster.join(id, 'r'), true)
  t.same(app.wsManager.getRoomMembers('r'), [id])
  t.equal(await app.wsManager.cluster.send(id, 'to you'), true)
  t.equal(await client.next(), 'to you')
  t.equal(app.wsManager.getStats().broadcastsTotal, 1, 'a send is not')

  await t.rejects(app.wsManager.cluster.broadcast('x', { timeout: 0 }), { code: 'FST_WS_ERROR', message: /cluster\.broadcast\(\)'s `timeout`.*got `0`/ })
  await t.rejects(app.wsManager.cluster.send(id, 'x', { timeout: Infinity }), { code: 'FST_WS_ERROR' })
  await t.rejects(app.wsManager.cluster.leave(id, 'r', { timeout: -1 }), { code: 'FST_WS_ERROR' })
  t.same(app.wsManager.getRoomMembers('r'), [id], 'a bad timeout is refused before anything is done')
  await client.close()
})

test('cluster.timeout is a plugin option, checked at register', async (t) => {
  t.throws(() => resolveOptions({ cluster: { timeout: 0 } }), InvalidOptionsError)
  t.throws(() => resolveOptions({ cluster: { wait: 1 } } as never), { message: /cluster/ })
  t.equal(resolveOptions({}).cluster.timeout, 5000, 'default 5 s')
})

test('an instance that does not answer: broadcast is partial after the timeout, a client found elsewhere is not held up, an absent one times out', { skip }, async (t) => {
  const redis = await startRedis(t)
  // a presence ttl of a minute: stopped, the child stays live in the presence for the whole test
  const child = spawn(process.execPath, [...execArgv, 'test/fixtures/cluster-instance.ts', redis.url, 'silent', '60000'], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { child.kill('SIGKILL') })
  const [line] = await once(child.stdout!, 'data') as [Buffer]
  const { port } = JSON.parse(line.toString()) as { port: number }
  const { TestClient } = await import('./helpers.ts')
  const onChild = await TestClient.open(`ws://127.0.0.1:${port}/ws?user=kid`)
  t.teardown(() => onChild.ws.terminate())
  await onChild.next()

  const adapter = (): RedisAdapter => new RedisAdapter({ url: redis.url, prefix: 'silent' })
  const a = await instance(t, { adapter: adapter(), cluster: { timeout: 150 } })
  const b = await instance(t, { adapter: adapter() })
  await others(a, 2)
  const onB = await connect(b, '/ws?user=bea')
  const idOnB = b.wsManager.getUserConnections('bea')[0].id
  t.same(await a.wsManager.cluster.broadcast('all three'), { instances: 3, answered: 3, total: 2, succeeded: 2, failed: 0, partial: false }, 'while the child answers')
  t.equal(await onB.next(), 'all three')
  t.match(JSON.parse(await onChild.next()), { data: 'all three' })

  child.kill('SIGSTOP')
  t.teardown(() => { child.kill('SIGCONT') })
  const started = Date.now()
  t.same(await a.wsManager.cluster.broadcast('two of three'), { instances: 3, answered: 2, total: 1, succeeded: 1, failed: 0, partial: true }, 'the plugin\'s timeout')
  t.ok(Date.now() - started >= 140, 'after the timeout')
  t.equal(await onB.next(), 'two of three')
  t.match(await b.wsManager.cluster.broadcast('per call', { timeout: 30 }), { instances: 3, answered: 2, partial: true }, 'a timeout per call')
  t.equal(await onB.next(), 'per call')

  t.equal(await a.wsManager.cluster.send(idOnB, 'found'), true, 'the instance holding it answered: no need to wait for the silent one')
  t.equal(await onB.next(), 'found')
  t.equal(await a.wsManager.cluster.join(idOnB, 'room'), true)
  const err = await a.wsManager.cluster.send('nobody', 'x').catch((err: unknown) => err)
  t.ok(err instanceof ClusterTimeoutError)
  t.match(err, { code: 'FST_WS_CLUSTER_TIMEOUT', statusCode: 504, message: 'cluster.send(): 1 of 2 instances answered within 150 ms, none holds the client' })
  await t.rejects(a.wsManager.cluster.disconnect('nobody', 1000, '', { timeout: 20 }), { code: 'FST_WS_CLUSTER_TIMEOUT', message: /disconnect\(\): 1 of 2 .* 20 ms/ })

  // its late answers come to nothing
  child.kill('SIGCONT')
  t.match(JSON.parse(await onChild.next()), { data: 'two of three' }, 'the child woke and delivered what it was asked')
  t.same(await a.wsManager.cluster.broadcast('awake'), { instances: 3, answered: 3, total: 2, succeeded: 2, failed: 0, partial: false })
  await onB.close()
})

test('an instance missing from the presence still counts when it answers', async (t) => {
  const bus = new MemoryBus()
  const a = await instance(t, { adapter: new MemoryAdapter({ bus }) })
  // made second: on the bus it answers before b
  const unlisted = await instance(t, { adapter: new MemoryAdapter({ bus }) })
  const b = await instance(t, { adapter: new MemoryAdapter({ bus }) })
  const clients = [await connect(unlisted, '/ws'), await connect(b, '/ws')]
  bus.presences.delete(unlisted.wsManager.adapter.presence as never)
  await others(a, 1)
  t.same(await a.wsManager.cluster.broadcast('x'), { instances: 3, answered: 3, total: 2, succeeded: 2, failed: 0, partial: false }, 'not waited for, but counted')
  for (const client of clients) await client.close()
})

test('instances asking at once each get their own answers (every instance hears every result)', async (t) => {
  const bus = new MemoryBus()
  const [a, b, c, d] = await Promise.all([1, 2, 3, 4].map(async () => await instance(t, { adapter: new MemoryAdapter({ bus }), cluster: { timeout: 100 } })))
  await others(a, 3)
  const clients = [await connect(a, '/ws'), await connect(b, '/ws'), await connect(c, '/ws'), await connect(c, '/ws')]
  for (const conn of c.wsManager.connections()) c.wsManager.join(conn.id, 'r')
  // d hears nothing: a's op waits for it while b asks, with the same request id (the first of each)
  ;(d.wsManager.adapter as MemoryAdapter).receive = () => {}
  const fromA = a.wsManager.cluster.broadcast('to r', { room: 'r' })
  await until(() => clients[3].pending > 0)
  const fromB = b.wsManager.cluster.broadcast('to all')
  t.same(await fromB, { instances: 4, answered: 3, total: 4, succeeded: 4, failed: 0, partial: true })
  t.same(await fromA, { instances: 4, answered: 3, total: 2, succeeded: 2, failed: 0, partial: true }, 'the answers to b counted for b only')
  for (const client of clients) await client.close()
})

test('Redis down: the ops that need the others reject with AdapterUnavailableError naming the call, and nothing is sent; a client here is still served', { skip }, async (t) => {
  const redis = await startRedis(t)
  const adapter = (): RedisAdapter => new RedisAdapter({ url: redis.url, prefix: 'down' })
  const a = await instance(t, { adapter: adapter() })
  await instance(t, { adapter: adapter() })
  await others(a, 1)
  const here = await connect(a, '/ws?user=hal')
  const id = a.wsManager.getUserConnections('hal')[0].id
  await redis.stop()
  await until(() => a.wsManager.health().status === 'degraded')

  const err = await a.wsManager.cluster.broadcast('x').catch((err: unknown) => err)
  t.ok(err instanceof AdapterUnavailableError)
  t.match(err, { code: 'FST_WS_ADAPTER_UNAVAILABLE', message: /`redis` adapter could not answer cluster\.broadcast\(\)/ })
  t.ok((err as Error).cause instanceof Error, 'the adapter\'s error as its cause')
  t.ok(await here.silentFor(30), 'nothing was sent, not even here')
  for (const call of [a.wsManager.cluster.send('nobody', 'x'), a.wsManager.cluster.join('nobody', 'r'), a.wsManager.cluster.leave('nobody', 'r'), a.wsManager.cluster.disconnect('nobody')]) {
    await t.rejects(call, { code: 'FST_WS_ADAPTER_UNAVAILABLE' })
  }
  t.equal(await a.wsManager.cluster.send(id, 'local'), true, 'a client here needs no Redis')
  t.equal(await here.next(), 'local')
  t.equal(await a.wsManager.cluster.join(id, 'r'), true)
  await here.close()
})

test('closing while ops wait: broadcasts resolve partial, the other ops reject with ShutdownError, new ones are refused', async (t) => {
  const bus = new MemoryBus()
  const a = await instance(t, { adapter: new MemoryAdapter({ bus }) })
  const b = await instance(t, { adapter: new MemoryAdapter({ bus }) })
  await others(a, 1)
  const onA = await connect(a, '/ws')
  // b hears nothing any more, but is still in the presence: a waits for it
  const silenced = b.wsManager.adapter as MemoryAdapter
  silenced.receive = () => {}
  const broadcast = a.wsManager.cluster.broadcast('waiting')
  const send = a.wsManager.cluster.send('nobody', 'x')
  const join = a.wsManager.cluster.join('nobody', 'r')
  await onA.next()
  const racing = a.wsManager.cluster.disconnect('nobody')
  // what fastify.close() calls in preClose, here in the same turn
  const closing = a.wsManager.gracefulShutdown()
  t.same(await broadcast, { instances: 2, answered: 1, total: 1, succeeded: 1, failed: 0, partial: true })
  await t.rejects(send, { code: 'FST_WS_SHUTDOWN', message: /cluster\.send\(\) was pending/ })
  t.ok(await join.catch((err: unknown) => err) instanceof ShutdownError)
  await t.rejects(racing, { code: 'FST_WS_SHUTDOWN', message: /cluster\.disconnect\(\) refused/ }, 'the count was under way when the shutdown began')
  await t.rejects(a.wsManager.cluster.broadcast('late'), { code: 'FST_WS_SHUTDOWN', message: /cluster\.broadcast\(\) refused/ })
  await closing
  await a.close()
  await t.rejects(a.wsManager.cluster.send('nobody', 'late'), { code: 'FST_WS_SHUTDOWN' }, 'after the close')
})
