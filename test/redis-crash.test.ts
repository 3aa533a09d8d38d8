import { test } from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import WebSocket from 'ws'
import { Redis } from 'ioredis'
import { RedisAdapter } from '../lib/adapters/redis.ts'
import { buildApp, connect, TestClient, until } from './helpers.ts'
import { redisAvailable, startRedis } from './redis-server.ts'

interface Welcome { type: 'welcome', clientId: string, token: string, offset: number, resumed: boolean, replayed?: number, resumeFailed?: string }
interface Frame { type: 'message', offset?: number, data: unknown }

/** The loader tap runs TypeScript with, and nothing else of its own. */
const execArgv = process.execArgv.filter(arg => arg.includes('@tapjs/typescript') || arg === '--enable-source-maps')

test('an instance killed without shutdown: its presence expires, and its client resumes on another instance with what it missed', { skip: !redisAvailable() && 'redis-server is not installed' }, async (t) => {
  const redis = await startRedis(t)
  const child = spawn(process.execPath, [...execArgv, 'test/fixtures/cluster-instance.ts', redis.url, 'crash'], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { child.kill('SIGKILL') })
  const [line] = await once(child.stdout!, 'data') as [Buffer]
  const { port } = JSON.parse(line.toString()) as { port: number }

  const a = await buildApp(t, { adapter: new RedisAdapter({ url: redis.url, prefix: 'crash', presenceTtl: 300 }), reconnect: { secret: 'cluster-instance-secret-01234567' } }, app => {
    app.get('/ws', { websocket: true, config: { ws: { reconnect: true } } }, () => {})
  })

  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws?user=zed&room=ops`)
  const client = new TestClient(ws)
  await once(ws, 'open')
  const welcome = await client.json<Welcome>()
  // the connection and its room are two writes of the child's presence
  await until(async () => await a.wsManager.cluster.isUserConnected('zed') && (await a.wsManager.cluster.getRoomMembers('ops')).length > 0, 2000)
  t.same(await a.wsManager.cluster.getRoomMembers('ops'), [welcome.clientId], 'the other instance sees it')

  await a.wsManager.broadcast({ n: 1 }, { room: 'ops' })
  const first = await client.json<Frame>()
  t.match(first, { data: { n: 1 } })

  // the child copies its log to Redis at the end of its turn: kill it once that copy holds
  // the message, or the client would hold an offset no copy covers (a gap, rightly)
  const redisClient = new Redis(redis.url)
  t.teardown(() => redisClient.disconnect())
  await until(async () => {
    const keys = await redisClient.keys('crash:log:*')
    const lengths = await Promise.all(keys.map(async key => await redisClient.xlen(key)))
    return lengths.filter(n => n >= 1).length === 2
  }, 3000, 'both instances\' log copies hold the message')
  child.kill('SIGKILL')
  t.equal((await client.closed).code, 1006)
  await a.wsManager.broadcast({ n: 2 }, { room: 'ops' })
  await a.wsManager.broadcast({ n: 'not for ops' }, { room: 'elsewhere' })

  await until(async () => await a.wsManager.cluster.getConnectionCount() === 0, 3000, 'the dead instance\'s presence expires')
  t.equal(await a.wsManager.cluster.isUserConnected('zed'), false)

  const back = await connect(a, `/ws?resume=${welcome.token}&offset=${first.offset!}`)
  t.match(await back.json<Welcome>(), { clientId: welcome.clientId, resumed: true, replayed: 1 })
  t.match(await back.json<Frame>(), { data: { n: 2 } })
  const conn = a.wsManager.getConnection(welcome.clientId)!
  t.same([...conn.rooms], ['ops'], 'rooms restored from the dead instance')
  t.same(conn.metadata, { from: 'child' })
  t.equal(conn.userId, 'zed')
  t.ok(await back.silentFor(30))
  await back.close()
})
