import { test } from 'tap'
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import type { FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import { RedisAdapter, RedisEmitter } from '../lib/adapters/redis.ts'
import { EmitFailedError, InvalidAdapterOptionsError, InvalidMessageError, WebSocketStabilizerError } from '../lib/errors.ts'
import { buildApp, connect, until, type TestClient } from './helpers.ts'
import { RedisServer, redisAvailable, startRedis } from './redis-server.ts'

/*
 * RedisEmitter: publishing from a process that has no sockets. The emitter runs in a child
 * process of its own (test/fixtures/emitter.ts), as a worker would, and reaches the clients
 * of two instances; what it sends is in every instance's replay log under one id, so a
 * client that was away gets it once on resume, wherever it resumes.
 */

interface Welcome { type: 'welcome', clientId: string, token: string, offset: number, resumed: boolean, replayed?: number, resumeFailed?: string }
interface Frame { type: 'message', offset?: number, binary?: boolean, data: unknown }

const SECRET = 'emitter-test-reconnect-secret-01'
const skip = !redisAvailable() && 'redis-server is not installed'
/** The loader tap runs TypeScript with, and nothing else of its own. */
const execArgv = process.execArgv.filter(arg => arg.includes('@tapjs/typescript') || arg === '--enable-source-maps')

type Test = Parameters<typeof buildApp>[0] & { teardown (fn: () => unknown): void }

async function instance (t: Test, url: string, prefix: string): Promise<FastifyInstance> {
  return await buildApp(t, { adapter: new RedisAdapter({ url, prefix }), reconnect: { secret: SECRET } }, app => {
    app.get('/ws', {
      websocket: true,
      config: { ws: { reconnect: true, identify: request => ({ userId: (request.query as { user?: string }).user }) } }
    }, (_socket, request) => {
      const room = (request.query as { room?: string }).room
      if (room !== undefined) request.wsConnection!.join(room)
    })
  })
}

/** The emitter in a process of its own: `call` sends it one call and resolves to its answer line. */
async function childEmitter (t: Test, url: string, prefix: string): Promise<(call: string, ...args: unknown[]) => Promise<{ ok?: unknown, error?: string }>> {
  const child = spawn(process.execPath, [...execArgv, 'test/fixtures/emitter.ts', url, prefix], { stdio: ['pipe', 'pipe', 'inherit'] })
  t.teardown(() => { child.kill('SIGKILL') })
  const answers = createInterface({ input: child.stdout! })[Symbol.asyncIterator]()
  const next = async (): Promise<{ ok?: unknown, error?: string, ready?: true }> => JSON.parse((await answers.next()).value as string)
  await next()
  return async (call, ...args) => {
    child.stdin!.write(JSON.stringify({ call, args }) + '\n')
    return await next()
  }
}

function dropTcp (client: TestClient): void {
  (client.ws as unknown as { _socket: { destroy (): void } })._socket.destroy()
}

async function frames (client: TestClient, n: number): Promise<Frame[]> {
  const out: Frame[] = []
  for (let i = 0; i < n; i++) out.push(await client.json<Frame>())
  return out
}

test('an emitter in a process of its own reaches the clients of two instances: rooms, exclude, a user, a client, volatile, disconnect', { skip }, async (t) => {
  const redis = await startRedis(t)
  const a = await instance(t, redis.url, 'emit')
  const b = await instance(t, redis.url, 'emit')
  const emit = await childEmitter(t, redis.url, 'emit')

  const annA = await connect(a, '/ws?user=ann&room=news')
  const bobA = await connect(a, '/ws?user=bob&room=news')
  const annB = await connect(b, '/ws?user=ann&room=news')
  const catB = await connect(b, '/ws?user=cat')
  const [, bob, , cat] = await Promise.all([annA, bobA, annB, catB].map(async c => await c.json<Welcome>()))

  t.same(await emit('broadcast', { n: 1 }, { room: 'news', exclude: bob.clientId }), { ok: 2 }, 'Redis handed it to both instances')
  t.same(await emit('broadcast', { n: 2 }), { ok: 2 })
  t.same(await emit('sendToUser', 'ann', { n: 3 }), { ok: 2 })
  t.same(await emit('send', cat.clientId, { n: 4 }), { ok: 2 })
  t.same(await emit('broadcast', { n: 5 }, { volatile: true }), { ok: 2 })

  const expected: Array<[TestClient, unknown[]]> = [
    [annA, [{ n: 1 }, { n: 2 }, { n: 3 }, { n: 5 }]],
    [bobA, [{ n: 2 }, { n: 5 }]],
    [annB, [{ n: 1 }, { n: 2 }, { n: 3 }, { n: 5 }]],
    [catB, [{ n: 2 }, { n: 4 }, { n: 5 }]]
  ]
  for (const [client, data] of expected) {
    const got = await frames(client, data.length)
    t.same(got.map(f => f.data), data, 'each gets what is addressed to it, in order')
    t.ok(got.slice(0, -1).every(f => typeof f.offset === 'number'), 'logged for replay: the frames carry offsets')
    t.equal(got[got.length - 1].offset, undefined, 'the volatile one is not logged')
  }

  t.same(await emit('disconnect', cat.clientId, 4000, 'bye'), { ok: 2 })
  t.same(await catB.closed, { code: 4000, reason: 'bye' })
  t.same(await emit('disconnect', 'on-no-instance'), { ok: 2 }, 'a clientId no instance has: nothing happens')
  for (const client of [annA, bobA, annB]) t.ok(await client.silentFor(30), 'nothing else came')
  t.same(await emit('close'), { ok: null })
  await Promise.all([annA, bobA, annB].map(async c => await c.close()))
})

test('a client that was away gets what the emitter sent meanwhile, once, on another instance and back', { skip }, async (t) => {
  const redis = await startRedis(t)
  const a = await instance(t, redis.url, 'away')
  const b = await instance(t, redis.url, 'away')
  const emit = await childEmitter(t, redis.url, 'away')
  const redisClient = new Redis(redis.url)
  t.teardown(() => redisClient.disconnect())
  /** The copies of the logs are written at the end of a turn: wait until the one a resume reads holds `n` entries. */
  const copied = async (app: FastifyInstance, n: number): Promise<void> => {
    await until(async () => await redisClient.xlen(`away:log:{${app.wsManager.instanceId}}`) >= n, 3000, 'the log copy')
  }

  const client = await connect(a, '/ws?user=ann&room=news')
  const welcome = await client.json<Welcome>()
  await emit('broadcast', { n: 0 }, { room: 'news' })
  const seen = await client.json<Frame>()
  dropTcp(client)
  await until(() => a.wsManager.getConnectionCount() === 0)

  await emit('broadcast', { n: 1 }, { room: 'news' })
  await emit('sendToUser', 'ann', { n: 2 })
  await emit('send', welcome.clientId, { n: 3 })
  await emit('broadcast', { n: 'volatile' }, { volatile: true })
  await emit('broadcast', { n: 'other room' }, { room: 'elsewhere' })
  await copied(a, 5)

  // on b: a's copy says what it missed after its offset, b's own log holds the same messages under the same ids
  const back = await connect(b, `/ws?user=ann&resume=${welcome.token}&offset=${seen.offset!}`)
  const resumed = await back.json<Welcome>()
  t.match(resumed, { clientId: welcome.clientId, resumed: true, replayed: 3 })
  const replayed = await frames(back, 3)
  t.same(replayed.map(f => f.data), [{ n: 1 }, { n: 2 }, { n: 3 }], 'in order, each once, the volatile one not at all')
  t.ok(await back.silentFor(30), 'no duplicates')

  // away again, and back on a from b's offsets
  dropTcp(back)
  await until(() => b.wsManager.getConnectionCount() === 0)
  await emit('broadcast', { n: 4 }, { room: 'news' })
  await copied(b, 5)
  const again = await connect(a, `/ws?user=ann&resume=${resumed.token}&offset=${replayed[2].offset!}`)
  t.match(await again.json<Welcome>(), { resumed: true, replayed: 1 })
  t.match(await again.json<Frame>(), { data: { n: 4 } })
  t.ok(await again.silentFor(30), 'no duplicates')
  await emit('close')
  await again.close()
})

test('messages are encoded once as the manager encodes them: JSON, text, binary', { skip }, async (t) => {
  const redis = await startRedis(t)
  const a = await instance(t, redis.url, 'kinds')
  const emitter = new RedisEmitter({ url: redis.url, prefix: 'kinds' })
  t.teardown(() => emitter.close())
  const client = await connect(a, '/ws?room=r')
  const { clientId } = await client.json<Welcome>()
  t.equal(await emitter.send(clientId, 'plain text'), 1)
  t.equal(await emitter.broadcast(Buffer.from([1, 2, 3]), { room: ['r', 'other'], exclude: ['x', 'x'] }), 1)
  t.equal(await emitter.broadcast(new Uint8Array([4]), { exclude: 'x' }), 1)
  t.equal(await emitter.broadcast({ ok: true }, { exclude: new Set([clientId]) }), 1)
  t.equal(await emitter.sendToUser('nobody', 'not for it'), 1)
  t.equal(await emitter.send(clientId, [1], { volatile: true }), 1)
  t.same(await client.json<Frame>(), { type: 'message', offset: 1, data: 'plain text' })
  t.same(await client.json<Frame>(), { type: 'message', offset: 2, binary: true, data: Buffer.from([1, 2, 3]).toString('base64') })
  t.same(await client.json<Frame>(), { type: 'message', offset: 3, binary: true, data: 'BA==' })
  t.same(await client.json<Frame>(), { type: 'message', data: [1] }, 'volatile: no offset')
  t.ok(await client.silentFor(30), 'excluded')
  await t.rejects(emitter.send(clientId, () => {}), InvalidMessageError)
  await client.close()
})

test('options are checked like the adapter\'s, calls like the manager\'s', { skip }, async (t) => {
  const redis = await startRedis(t)
  const cases: Array<[unknown, RegExp]> = [
    [null, /Expected `options` to be an object, got `null`/],
    [{ urll: 'redis://x' }, /Unknown option `urll`/],
    [{ prefix: '' }, /Expected `prefix` to be a non-empty string without braces \(they would make a hash tag of it\), got `""`/],
    [{ prefix: 'a{b}' }, /Expected `prefix` to be a non-empty string without braces/],
    [{ client: new Redis({ lazyConnect: true }), nodes: [{ port: 1 }] }, /Expected either `nodes` \(with `clusterOptions`\) or `client`, got both/],
    [{ nodes: [{ port: 1 }], redisOptions: {} }, /got both: the nodes' options go in `clusterOptions.redisOptions`/],
    [{ clusterOptions: {} }, /Expected `clusterOptions` only with `nodes`, got it without/],
    [{ pubsub: 'fast' }, /Expected `pubsub` to be `classic` or `sharded`, got `"fast"`/],
    [{ shards: 0 }, /Expected `shards` to be an integer from 1 to 1024, got `0`/],
    [{ url: 1 }, /Expected `url` to be a Redis URL/],
    [{ client: {} }, /Expected `client` to be an ioredis client, got `\{\}`/],
    [{ client: new Redis({ lazyConnect: true }), url: redis.url }, /Expected either `client` or `url`/],
    [{ subscriber: new Redis({ lazyConnect: true }) }, /Unknown option `subscriber`/]
  ]
  for (const [options, message] of cases) {
    t.throws(() => new RedisEmitter(options as never), { code: 'FST_WS_INVALID_ADAPTER_OPTIONS', message: /^Invalid RedisEmitter options: / })
    t.throws(() => new RedisEmitter(options as never), message)
  }
  t.ok(new InvalidAdapterOptionsError('RedisEmitter', 'x') instanceof WebSocketStabilizerError)

  const local = new RedisEmitter()
  t.match(local.client.options, { host: '127.0.0.1', port: 6379 }, 'the adapter\'s default URL')
  t.equal(local.channel, 'wss:msg', 'and its default prefix')
  await local.close()
  const emitter = new RedisEmitter({ url: redis.url, redisOptions: { lazyConnect: true } })
  t.teardown(() => emitter.close())
  const calls: Array<[() => Promise<number>, RegExp]> = [
    [async () => await emitter.broadcast('x', { room: '' }), /Expected a room name to be a non-empty string, got ``/],
    [async () => await emitter.broadcast('x', { room: ['a', 1 as never] }), /Expected a room name to be a non-empty string, got `1`/],
    [async () => await emitter.broadcast('x', { exclude: [''] }), /Expected an excluded clientId to be a non-empty string/],
    [async () => await emitter.sendToUser(undefined as never, 'x'), /Expected a userId to be a non-empty string, got `undefined`/],
    [async () => await emitter.send('', 'x'), /Expected a clientId to be a non-empty string/],
    [async () => await emitter.disconnect('', 4000), /Expected a clientId to be a non-empty string/],
    [async () => await emitter.disconnect('c', 1006), /Expected a close code of 1000 or 3000-4999, got `1006`/],
    [async () => await emitter.disconnect('c', 5000), /got `5000`/],
    [async () => await emitter.disconnect('c', 4000.5), /got `4000.5`/],
    [async () => await emitter.disconnect('c', 4000, 'x'.repeat(124)), /Expected a close reason to be a string of at most 123 bytes/],
    [async () => await emitter.disconnect('c', 4000, 7 as never), /got `7`/]
  ]
  for (const [call, message] of calls) await t.rejects(call(), { code: 'FST_WS_ERROR', message })
  t.equal(emitter.client.status, 'wait', 'nothing was published')
  await emitter.close()
  t.equal(emitter.client.status, 'end', 'closed without connecting')
})

test('close(): a client it made is closed after what was published, a client you gave is left open', { skip }, async (t) => {
  const redis = await startRedis(t)
  const made = new RedisEmitter({ url: redis.url })
  const sent = made.broadcast({ n: 1 })
  await made.close()
  t.equal(await sent, 0, 'published before the close (no instance listens)')
  await until(() => made.client.status === 'end', 2000, 'its connection ended')
  await t.rejects(made.broadcast({ n: 2 }), { code: 'FST_WS_EMIT_FAILED', message: 'RedisEmitter could not publish a broadcast: the emitter is closed' })
  await t.rejects(made.disconnect('c'), EmitFailedError)
  await made.close()

  const client = new Redis(redis.url)
  t.teardown(() => client.disconnect())
  const given = new RedisEmitter({ client, prefix: 'mine' })
  t.equal(given.client, client)
  t.equal(await given.sendToUser('u', 'x'), 0)
  await given.close()
  t.equal(client.status, 'ready', 'your client stays open')
  t.equal(await client.ping(), 'PONG')
  await t.rejects(given.send('c', 'x'), EmitFailedError)
  t.equal(client.listenerCount('error'), 0, 'the emitter put no listener on your client')
})

test('Redis down: a publish waits in ioredis\' offline queue and goes out when Redis is back, or fails after its retries', { skip }, async (t) => {
  const redis = await new RedisServer().start()
  t.teardown(() => redis.stop())
  const a = await instance(t, redis.url, 'down')
  const client = await connect(a, '/ws')
  const { clientId } = await client.json<Welcome>()
  const patient = new RedisEmitter({ url: redis.url, prefix: 'down', redisOptions: { retryStrategy: () => 20 } })
  t.teardown(() => patient.close())
  const impatient = new RedisEmitter({ url: redis.url, prefix: 'down', redisOptions: { retryStrategy: () => 20, maxRetriesPerRequest: 1 } })
  t.equal(await patient.send(clientId, { n: 0 }), 1)
  t.equal(await impatient.send(clientId, { n: 1 }), 1)
  await client.json<Frame>()
  await client.json<Frame>()

  await redis.stop()
  await until(() => patient.client.status !== 'ready' && impatient.client.status !== 'ready')
  const waiting = patient.send(clientId, { n: 2 })
  const failing = impatient.broadcast({ n: 3 })
  const err = await failing.catch((err: Error & { cause?: Error }) => err) as Error & { code?: string, cause?: Error }
  t.equal(err.code, 'FST_WS_EMIT_FAILED')
  t.match(err.message, /^RedisEmitter could not publish a broadcast: MaxRetriesPerRequestError/)
  t.equal(err.cause?.name, 'MaxRetriesPerRequestError', 'the ioredis error as cause')
  // its close waits for what is queued: that fails, and so does the quit behind it
  const queued = impatient.send(clientId, { n: 4 }).catch((err: Error & { code?: string }) => err.code)
  await impatient.close()
  t.equal(await queued, 'FST_WS_EMIT_FAILED')

  await redis.start()
  // the instance resubscribes on its own: the queued publish may go out before, so count it, not its arrival
  t.type(await waiting, 'number', 'it went out once Redis was back')
  await until(() => a.wsManager.health().status === 'ok', 3000, 'the instance reconnected')
  t.equal(await patient.send(clientId, { n: 5 }), 1)
  t.not(impatient.client.status, 'ready', 'a closed emitter does not reconnect')
  let last: Frame
  do last = await client.json<Frame>(); while ((last.data as { n: number }).n !== 5)
  t.pass('the instance gets what is published after it is back')
  await client.close()
})
