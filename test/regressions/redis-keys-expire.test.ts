import { test } from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import WebSocket from 'ws'
import { Redis } from 'ioredis'
import { RedisAdapter } from '../../lib/adapters/redis.ts'
import { buildApp, connect, TestClient, until } from '../helpers.ts'
import { redisAvailable, startRedis } from '../redis-server.ts'

/*
 * Every key the Redis adapter writes (presence, instance set, user counts, sessions, token
 * nonces, log copies) must expire or be deleted: an instance that lives a few seconds, one
 * that stays, and one killed without a shutdown must leave no key without a TTL. Before,
 * an instance that lived less than a quarter of `maxDisconnect` left its log stream for
 * ever (its first PEXPIRE ran before the write that made the key), and a killed instance
 * left its id in `<prefix>:instances` for ever.
 */

const PREFIX = 'crash' // the fixture's prefix is its second argument
const SECRET = 'cluster-instance-secret-01234567'
const execArgv = process.execArgv.filter(arg => arg.includes('@tapjs/typescript') || arg === '--enable-source-maps')

interface Welcome { clientId: string, token: string, offset: number }

/** Every key under the prefix whose PTTL is not positive (no expiry), with its type. */
async function keysWithoutTtl (redis: Redis): Promise<string[]> {
  const found: string[] = []
  let cursor = '0'
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${PREFIX}:*`, 'COUNT', 100)
    cursor = next
    for (const key of keys) {
      const ttl = await redis.pttl(key)
      // -2: gone since the scan
      if (ttl === -1) found.push(`${key} (${await redis.type(key)})`)
    }
  } while (cursor !== '0')
  return found.sort()
}

async function allKeys (redis: Redis): Promise<string[]> {
  return (await redis.keys(`${PREFIX}:*`)).sort()
}

test('no Redis key is left without an expiry: short-lived, long-lived and killed instances', { skip: !redisAvailable() && 'redis-server is not installed' }, async (t) => {
  const server = await startRedis(t)
  const redis = new Redis(server.url)
  t.teardown(() => redis.disconnect())
  const route = (app: Awaited<ReturnType<typeof buildApp>>): void => {
    app.get('/ws', { websocket: true, config: { ws: { reconnect: true, rooms: ['lobby'], identify: r => ({ userId: (r.query as { user?: string }).user }) } } }, () => {})
  }
  const options = (): Parameters<typeof buildApp>[1] => ({ adapter: new RedisAdapter({ url: server.url, prefix: PREFIX, presenceTtl: 300 }), reconnect: { secret: SECRET } })

  // stays up the whole test
  const stays = await buildApp(t, options(), route)
  const onStays = await connect(stays, '/ws?user=ann')
  await onStays.json()

  // killed without a shutdown once its log copy holds a message
  const child = spawn(process.execPath, [...execArgv, 'test/fixtures/cluster-instance.ts', server.url, PREFIX], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { child.kill('SIGKILL') })
  const [line] = await once(child.stdout!, 'data') as [Buffer]
  const { port } = JSON.parse(line.toString()) as { port: number }
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws?user=zed&room=lobby`)
  const onChild = new TestClient(ws)
  await once(ws, 'open')
  await onChild.json()

  // lives a few ms: connects, resumes (a nonce, a session), logs, closes
  const brief = await buildApp({ after: () => {} }, options(), route)
  const bob = await connect(brief, '/ws?user=bob')
  const bobWelcome = await bob.json<Welcome>()
  await stays.wsManager.broadcast({ n: 1 }, { room: 'lobby' })
  for (const client of [onStays, onChild, bob]) await client.json()
  bob.ws.terminate()
  await until(() => brief.wsManager.getConnectionCount() === 0)
  const back = await connect(brief, `/ws?user=bob&resume=${bobWelcome.token}&offset=${bobWelcome.offset + 1}`)
  await back.json()
  await back.close()
  await until(async () => (await redis.keys(`${PREFIX}:session:*`)).length === 1, 2000, 'bob\'s session saved')
  await until(async () => {
    const logs = await redis.keys(`${PREFIX}:log:*`)
    const lengths = await Promise.all(logs.map(async key => await redis.xlen(key)))
    return lengths.filter(n => n >= 1).length === 3
  }, 3000, 'the three log copies hold the message')
  const closed = [brief.wsManager.instanceId, stays.wsManager.instanceId]
  await brief.close()

  child.kill('SIGKILL')
  await onChild.closed
  // the live instance's presence is refreshed meanwhile, heartbeats go on
  await until(async () => await stays.wsManager.cluster.getConnectionCount() === 1, 3000, 'the killed instance drops out')

  const kinds = new Set((await allKeys(redis)).map(key => key.split(':')[1]))
  for (const kind of ['instance', 'instances', 'presence', 'users', 'nonce', 'session', 'log']) t.ok(kinds.has(kind), `a ${kind} key was written`)
  t.same(await keysWithoutTtl(redis), [], 'every key expires')

  // a graceful close of the last instance too
  await onStays.close()
  await stays.close()
  t.same(await keysWithoutTtl(redis), [], 'every key left after the last close expires')
  const left = await allKeys(redis)
  for (const id of closed) {
    t.same(left.filter(key => /^crash:(instance|presence|users):/.test(key) && key.endsWith(id)), [], 'the presence of a closed instance is deleted')
  }
})

test('a log copy outlives its retention while its instance lives, idle', { skip: !redisAvailable() && 'redis-server is not installed' }, async (t) => {
  const server = await startRedis(t)
  const redis = new Redis(server.url)
  t.teardown(() => redis.disconnect())
  const retention = 600 // refreshed every 150 ms: a busy machine's stall stays well under it
  const app = await buildApp(t, { adapter: new RedisAdapter({ url: server.url, prefix: PREFIX }), reconnect: { secret: SECRET, maxDisconnect: retention } }, app => {
    app.get('/ws', { websocket: true, config: { ws: { reconnect: true } } }, () => {})
  })
  const client = await connect(app, '/ws')
  await client.json()
  await app.wsManager.broadcast('once')
  await client.json()
  const key = `${PREFIX}:log:{${app.wsManager.instanceId}}`
  await until(async () => await redis.xlen(key) === 1, 2000, 'the copy is written')
  const written = Date.now()
  // idle for longer than the retention: the instance keeps its log's expiry fresh
  await until(() => Date.now() - written > 2 * retention, 3000)
  t.equal(await redis.xlen(key), 1, 'still there')
  const ttl = await redis.pttl(key)
  t.ok(ttl > 0 && ttl <= retention, `expires within the retention (${ttl} ms)`)
  await client.close()
})
