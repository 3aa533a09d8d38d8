import { test } from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import type { FastifyInstance } from 'fastify'
import WebSocket from 'ws'
import { Redis } from 'ioredis'
import { RedisAdapter } from '../lib/adapters/redis.ts'
import type { PresenceEvent, WsStabilizerOptions } from '../plugin.ts'
import { buildApp, connect, TestClient, until } from './helpers.ts'
import { redisAvailable, startRedis } from './redis-server.ts'

/*
 * Room presence over Redis: instances in this process on a private redis-server, and one in
 * a child process that is killed without a shutdown.
 */

const skip = !redisAvailable() && 'redis-server is not installed (apt-get install -y redis-server)'
const SECRET = 'cluster-instance-secret-01234567'
const execArgv = process.execArgv.filter(arg => arg.includes('@tapjs/typescript') || arg === '--enable-source-maps')

interface Test { after (fn: () => unknown): void }

async function instance (t: Test, url: string, options: WsStabilizerOptions = {}): Promise<FastifyInstance> {
  return await buildApp(t, { adapter: new RedisAdapter({ url, prefix: 'presence', presenceTtl: 300 }), reconnect: { secret: SECRET, maxDisconnect: 3000 }, ...options }, app => {
    const identify = (request: { query: unknown }): { userId?: string } => ({ userId: (request.query as { user?: string }).user })
    app.get('/presence', { websocket: true, config: { ws: { rooms: ['lobby'], presence: true, identify } } }, () => {})
    app.get('/r', { websocket: true, config: { ws: { rooms: ['lobby'], presence: true, reconnect: { replay: false }, identify } } }, () => {})
  })
}

async function next (client: TestClient, type: string): Promise<any> {
  for (;;) {
    const frame = await client.json()
    if (frame.type === type) return frame
  }
}

const users = (e: PresenceEvent): [string[], string[]] => [e.joins.map(u => u.userId), e.leaves.map(u => u.userId)]

test('over Redis: each user joins and leaves once on every instance, devices on two instances are one user, a resume elsewhere is no leave', { skip }, async (t) => {
  const redis = await startRedis(t)
  const a = await instance(t, redis.url)
  const b = await instance(t, redis.url)
  const seen = { a: [] as PresenceEvent[], b: [] as PresenceEvent[] }
  a.wsManager.on('presence', e => seen.a.push(e))
  b.wsManager.on('presence', e => seen.b.push(e))
  const bob = await connect(b, '/presence?user=bob')
  await next(bob, 'presence.state')
  // bob's join goes to a over Redis: wait for it there (under load it can take a while)
  await until(async () => (await a.wsManager.presence('lobby')).bob !== undefined, 5000, 'a to learn of bob')
  const alice = await connect(a, '/r?user=alice')
  const welcome = await next(alice, 'welcome')
  t.same(Object.keys((await next(alice, 'presence.state')).users).sort(), ['alice', 'bob'], 'a learned of bob from b')
  t.same(Object.keys((await next(bob, 'presence.diff')).joins), ['alice'])
  // alice's phone, on b
  const phone = await connect(b, '/presence?user=alice')
  await next(phone, 'presence.state')
  t.equal((await next(bob, 'presence.diff')).joins.alice.length, 1)
  await until(async () => (await a.wsManager.presence('lobby')).alice?.length === 2, 2000, 'a to see both of alice\'s devices')
  // her laptop drops and resumes on b
  alice.ws.terminate()
  const back = await connect(b, `/r?resume=${String(welcome.token)}`)
  t.match(await back.json(), { type: 'welcome', resumed: true })
  await next(back, 'presence.state')
  await phone.close()
  t.same(Object.keys((await next(bob, 'presence.diff')).leaves), ['alice'], 'the phone went: a diff of its meta')
  await back.close()
  t.same(Object.keys((await next(bob, 'presence.diff')).leaves), ['alice'])
  const flat = (events: PresenceEvent[]): [string[], string[]] => [events.flatMap(e => users(e)[0]).sort(), events.flatMap(e => users(e)[1])]
  await until(() => flat(seen.a)[1].length === 1 && flat(seen.b)[1].length === 1, 2000, 'every instance to see alice leave')
  // (a may see bob and alice join in one flush: its start's snapshot answer and alice came in one turn)
  for (const events of [seen.a, seen.b]) t.same(flat(events), [['alice', 'bob'], ['alice']], 'alice joined once and left once')
  t.same(await a.wsManager.presence('lobby'), await b.wsManager.presence('lobby'))
  await bob.close()
})

test('over Redis: the users of an instance killed without a shutdown leave once its presence expired', { skip }, async (t) => {
  const redis = await startRedis(t)
  // the child's liveness lasts 1 s, refreshed every third of it: a loaded machine may stall it
  // for a few hundred ms without it passing for dead
  const child = spawn(process.execPath, [...execArgv, 'test/fixtures/cluster-instance.ts', redis.url, 'presence', '1000', 'presence'], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { child.kill('SIGKILL') })
  const [line] = await once(child.stdout!, 'data') as [Buffer]
  const { port } = JSON.parse(line.toString()) as { port: number }
  const a = await instance(t, redis.url, { presence: { sweep: 50 } })
  const seen: PresenceEvent[] = []
  a.wsManager.on('presence', e => seen.push(e))
  const bob = await connect(a, '/presence?user=bob')
  await next(bob, 'presence.state')
  const ws = new WebSocket(`ws://127.0.0.1:${port}/presence?user=zed`)
  const zed = new TestClient(ws)
  await once(ws, 'open')
  // the child may have its state before bob's join reached it: then a diff brings him
  let known = Object.keys((await next(zed, 'presence.state')).users)
  if (!known.includes('bob')) known = [...known, ...Object.keys((await next(zed, 'presence.diff')).joins)]
  t.same(known.sort(), ['bob', 'zed'], 'the child knows bob')
  t.same(Object.keys((await next(bob, 'presence.diff')).joins), ['zed'])
  const redisClient = new Redis(redis.url)
  t.teardown(() => redisClient.disconnect())
  const alive = async (): Promise<number> => (await redisClient.keys('presence:instance:*')).length
  t.equal(await alive(), 2, 'both instances are alive before the kill')
  child.kill('SIGKILL')
  t.equal((await zed.closed).code, 1006)
  t.same(Object.keys((await next(bob, 'presence.diff')).leaves), ['zed'], 'zed left')
  // the leave comes from the sweep that found the child's liveness key gone, never before
  t.equal(await alive(), 1, 'once the dead instance\'s liveness key expired, not before')
  t.same(seen.map(users), [[['bob'], []], [['zed'], []], [[], ['zed']]])
  await bob.close()
})
