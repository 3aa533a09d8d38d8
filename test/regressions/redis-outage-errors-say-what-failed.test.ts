import { test } from 'tap'
import { Cluster } from 'ioredis'
import WebSocket from 'ws'
import { RedisAdapter } from '../../lib/adapters/redis.ts'
import { StabilizerClient } from '../../lib/client/index.ts'
import { AdapterUnavailableError, InvalidAdapterOptionsError, WebSocketStabilizerError } from '../../lib/errors.ts'
import { buildApp, connect, until, urlOf } from '../helpers.ts'
import { redisAvailable, startRedis } from '../redis-server.ts'

/*
 * What a Redis outage says. A resume with a valid token says the session store is
 * unavailable (before: `invalid`, as for a forged token); `cluster.*` rejects with
 * AdapterUnavailableError naming the call, the ioredis error as its cause (before: the
 * raw "Stream isn't writeable…"); and RedisAdapter refuses options it does not know
 * (before: `urll` was ignored, and the adapter went to 127.0.0.1:6379).
 */

const skip = !redisAvailable() && 'redis-server is not installed'
const SECRET = 'outage-errors-secret-0123456789'

interface Welcome { clientId: string, token: string, resumed: boolean, resumeFailed?: string }

test('Redis down: a resume with a valid token fails as `unavailable`, and the client says so', { skip }, async (t) => {
  const redis = await startRedis(t)
  const route = (app: Awaited<ReturnType<typeof buildApp>>): void => {
    app.get('/ws', { websocket: true, config: { ws: { reconnect: true } } }, () => {})
  }
  const options = { reconnect: { secret: SECRET } }
  const a = await buildApp(t, { ...options, adapter: new RedisAdapter({ url: redis.url, prefix: 'errors' }) }, route)
  const b = await buildApp(t, { ...options, adapter: new RedisAdapter({ url: redis.url, prefix: 'errors' }) }, route)
  const first = await connect(a, '/ws')
  const welcome = await first.json<Welcome>()
  await first.close()
  const client = new StabilizerClient(urlOf(b, '/ws'), { WebSocket, protocol: 'stabilizer', reconnect: { initialDelay: 20 } })
  t.teardown(() => client.close())
  await client.connect()
  await until(() => client.clientId !== undefined)
  const before = client.clientId

  await redis.stop()
  await until(() => a.wsManager.health().status === 'degraded' && b.wsManager.health().status === 'degraded')
  const back = await connect(b, `/ws?resume=${welcome.token}`)
  t.match(await back.json<Welcome>(), { resumed: false, resumeFailed: 'unavailable' }, 'not `invalid`: the token was never checked')
  await back.close()
  await t.rejects(b.wsManager.validateReconnectToken(welcome.token), { code: 'FST_WS_ADAPTER_UNAVAILABLE', message: /token nonce/, cause: { message: /Stream isn't writeable/ } })

  // the client: a resumeFailed like the others, with the reason
  const failed = new Promise(resolve => client.on('resumeFailed', resolve))
  for (const conn of b.wsManager.connections()) conn.socket.terminate()
  t.same(await failed, { reason: 'unavailable', resent: 0 })
  t.not(client.clientId, before, 'a fresh session')
})

test('Redis down: cluster.* rejects with AdapterUnavailableError naming the call and the cause', { skip }, async (t) => {
  const redis = await startRedis(t)
  const app = await buildApp(t, { adapter: new RedisAdapter({ url: redis.url, prefix: 'errors-cluster' }) })
  t.equal(await app.wsManager.cluster.getConnectionCount(), 0)
  await redis.stop()
  await until(() => app.wsManager.health().status === 'degraded')
  const cluster = app.wsManager.cluster
  const calls: Array<[string, () => Promise<unknown>]> = [
    ['getConnectionCount()', async () => await cluster.getConnectionCount()],
    ['getActiveUsers()', async () => await cluster.getActiveUsers()],
    ['getUserCount()', async () => await cluster.getUserCount()],
    ['isUserConnected()', async () => await cluster.isUserConnected('ann')],
    ['getUserConnectionCount()', async () => await cluster.getUserConnectionCount('ann')],
    ['getRoomMembers()', async () => await cluster.getRoomMembers('lobby')],
    ['getRoomUsers()', async () => await cluster.getRoomUsers('lobby')]
  ]
  for (const [name, call] of calls) {
    const err = await call().then(() => undefined, (e: unknown) => e) as Error & { code: string, cause: Error }
    t.ok(err instanceof AdapterUnavailableError && err instanceof WebSocketStabilizerError, `${name}: an AdapterUnavailableError`)
    t.equal(err.code, 'FST_WS_ADAPTER_UNAVAILABLE')
    t.match(err.message, `cluster.${name}`, `${name}: the message names the call`)
    t.match(err.message, /redis/, 'and the adapter')
    t.match(err.cause.message, /Stream isn't writeable/, 'the cause is the ioredis error')
  }
})

test('RedisAdapter validates its options, naming the field', async (t) => {
  const invalid = (options: unknown, message: RegExp): void => {
    t.throws(() => new RedisAdapter(options as never), { code: 'FST_WS_INVALID_ADAPTER_OPTIONS', message }, String(message))
  }
  invalid({ urll: 'redis://127.0.0.1:1' }, /^Invalid RedisAdapter options: Unknown option `urll`; known options here are `url`, /)
  invalid({ url: 6379 }, /Expected `url` to be a Redis URL such as redis:\/\/host:6379\/0, got `6379`/)
  invalid({ maxQueue: -1 }, /Expected `maxQueue` to be a non-negative integer, got `-1`/)
  invalid({ presenceTtl: 0 }, /Expected `presenceTtl` to be a positive integer number of milliseconds, got `0`/)
  invalid({ prefix: '' }, /Expected `prefix` to be a non-empty string without braces \(they would make a hash tag of it\), got `""`/)
  invalid({ prefix: 'app{1}' }, /Expected `prefix` to be a non-empty string without braces/)
  invalid({ url: 'redis://x', nodes: [{ port: 7000 }] }, /Expected either `nodes` \(with `clusterOptions`\) or `url`, got both/)
  invalid({ nodes: [] }, /Expected `nodes` to be a non-empty list of Redis Cluster nodes such as \{ host, port \}, got `\[\]`/)
  invalid({ nodes: [{ port: 7000 }], clusterOptions: 1 }, /Expected `clusterOptions` to be an object of ioredis Cluster options, got `1`/)
  invalid({ pubsub: 'sharding' }, /Expected `pubsub` to be `classic` or `sharded`, got `"sharding"`/)
  invalid({ shards: 2000 }, /Expected `shards` to be an integer from 1 to 1024, got `2000`/)
  const plain = new Cluster([{ port: 1 }], { lazyConnect: true })
  invalid({ client: plain, subscriber: plain, pubsub: 'sharded' }, /Expected `subscriber` to be a Cluster made with `shardedSubscribers: true` for `pubsub: 'sharded'`, got one without/)
  invalid({ closeClients: 'yes' }, /Expected `closeClients` to be a boolean, got `"yes"`/)
  invalid({ redisOptions: 'x' }, /Expected `redisOptions` to be an object of ioredis options, got `"x"`/)
  invalid({ client: {} }, /Expected `client` to be an ioredis client, got `\{\}`/)
  invalid({ subscriber: 'redis://x' }, /Expected `subscriber` to be an ioredis client, got `"redis:\/\/x"`/)
  invalid('redis://127.0.0.1', /Expected `options` to be an object, got `"redis:\/\/127.0.0.1"`/)
  invalid(null, /Expected `options` to be an object, got `null`/)
  invalid([], /Expected `options` to be an object, got `\[\]`/)
  invalid({ client: null }, /Expected `client` to be an ioredis client, got `null`/)
  invalid({ client: { duplicate () {} } }, /Expected `client` to be an ioredis client/)
  invalid({ client: { duplicate () {}, publish () {} } }, /Expected `client` to be an ioredis client/)
  t.ok(new InvalidAdapterOptionsError('RedisAdapter', 'x') instanceof WebSocketStabilizerError)
  const adapter = new RedisAdapter({ url: 'redis://127.0.0.1:1', prefix: 'p', maxQueue: 0, presenceTtl: 1000, closeClients: false, redisOptions: { connectTimeout: 10 } })
  t.equal(adapter.prefix, 'p', 'valid options are taken')
  await adapter.close()
})
