import { test } from 'tap'
import { Redis } from 'ioredis'
import type { FastifyInstance } from 'fastify'
import { RedisAdapter } from '../lib/adapters/redis.ts'
import { MemoryResumeStore } from '../lib/adapters/memory-resume-store.ts'
import type { Session } from '../lib/resume/sessions.ts'
import { buildApp, connect, until } from './helpers.ts'
import { redisAvailable, startRedis } from './redis-server.ts'

/*
 * A session taken by a resume leaves a fence: an instance that notices a half-open socket
 * only after the client resumed elsewhere cannot put back the older session it had.
 */

const skip = !redisAvailable() && 'redis-server is not installed'

interface Welcome { clientId: string, token: string, offset: number, resumed: boolean, resumeFailed?: string }

const session = (generation?: number): Session => ({ clientId: 'c', userId: undefined, metadata: {}, rooms: [], stream: 's', connectedAt: 0, expiresAt: Date.now() + 60_000, generation })

test('the memory store: a taken session leaves a fence that refuses older generations until it expires', async (t) => {
  const store = new MemoryResumeStore({ instanceId: 'i', replayMessages: 10, replayBytes: 1000, sweepEvery: 10, retention: 40 }, false).acquire()
  t.teardown(() => store.close())
  store.saveSession(session())
  store.saveSession(session())
  t.equal(store.takeSession('c')?.generation, undefined, 'the first connection is generation 0 (saved twice: the second replaced the first)')
  store.saveSession(session())
  t.equal(store.takeSession('c'), undefined, 'the late save of generation 0 was refused')
  store.saveSession(session(1))
  t.equal(store.takeSession('c')?.generation, 1, 'the resumed connection\'s own save is kept')
  await until(() => store.sessions.size === 0, 1000, 'the fence expired and was swept')
  store.saveSession(session())
  t.equal(store.takeSession('c')?.generation, undefined, 'after the fence, any save is kept')

  const unswept = new MemoryResumeStore({ instanceId: 'i', replayMessages: 10, replayBytes: 1000, sweepEvery: 60_000, retention: 1 }, false).acquire()
  t.teardown(() => unswept.close())
  unswept.saveSession(session())
  unswept.takeSession('c')
  await new Promise(resolve => setTimeout(resolve, 5))
  unswept.saveSession(session())
  t.ok(unswept.takeSession('c'), 'a fence that expired refuses nothing, swept or not')
})

test('a client that hops between instances over half-open sockets: the late save of the first is refused, the next resume gets the newest session', { skip }, async (t) => {
  const redis = await startRedis(t)
  const raw = new Redis(redis.url)
  t.teardown(() => raw.disconnect())
  const debug: Array<{ msg: string, clientId?: string }> = []
  const make = async (logs?: typeof debug): Promise<{ app: FastifyInstance, adapter: RedisAdapter }> => {
    const adapter = new RedisAdapter({ url: redis.url, prefix: 'stale' })
    const stream = { write: (line: string) => { logs?.push(JSON.parse(line)) } }
    const app = await buildApp(t, { adapter, reconnect: { secret: 'stale-session-secret-0123456789ab', maxDisconnect: 5000 } }, app => {
      app.get('/ws', { websocket: true, config: { ws: { reconnect: true } } }, () => {})
    }, { logger: { level: 'debug', stream } })
    return { app, adapter }
  }
  const { app: x, adapter: ax } = await make(debug)
  const { app: y } = await make()

  const first = await connect(x, '/ws')
  const w0 = await first.json<Welcome>()
  const id = w0.clientId
  x.wsManager.join(id, 'first')
  await new Promise(resolve => setTimeout(resolve, 30))
  // x hears nothing from the other instances: y's "replaced" never reaches it
  await ax.subscriber.unsubscribe(ax.channel)

  const second = await connect(y, `/ws?resume=${w0.token}&offset=${w0.offset}`)
  const w1 = await second.json<Welcome>()
  t.match(w1, { clientId: id, resumed: true })
  y.wsManager.join(id, 'second')
  t.same(JSON.parse((await raw.get(`stale:session:{${id}}`))!), { fence: true, generation: 1 }, 'the session taken from x\'s presence left a fence')

  // only now does x's socket end, for another reason than a replacement: x saves what it had
  first.ws.terminate()
  await until(() => x.wsManager.getConnectionCount() === 0)
  await until(() => debug.some(l => l.msg === 'session not saved: the client resumed elsewhere since' && l.clientId === id), 2000, 'the refusal logged')
  t.same(JSON.parse((await raw.get(`stale:session:{${id}}`))!), { fence: true, generation: 1 }, 'x\'s older session was not saved')

  // the client's socket to y is half-open now too; it comes back to x
  await new Promise(resolve => setTimeout(resolve, 30))
  const third = await connect(x, `/ws?resume=${w1.token}&offset=${w1.offset}`)
  t.match(await third.json<Welcome>(), { clientId: id, resumed: true })
  t.same([...x.wsManager.getConnection(id)!.rooms].sort(), ['first', 'second'], 'the session y had, not the one x had')
  t.match(await second.closed, { code: 4001 }, 'y\'s socket was replaced')
  t.same(JSON.parse((await raw.get(`stale:session:{${id}}`))!), { fence: true, generation: 2 })
  t.ok(await raw.pttl(`stale:session:{${id}}`) > 0, 'the fence expires')

  // the newest connection's own save is kept
  await third.close()
  await until(async () => JSON.parse((await raw.get(`stale:session:{${id}}`)) ?? '{}').generation === 2 && (await raw.get(`stale:session:{${id}}`))!.includes('"rooms"'))
  t.ok(await raw.pttl(`stale:session:{${id}}`) > 0, 'the session expires')
})

test('of two instances whose presence holds the client (one has not noticed it left), a resume takes the newest generation', { skip }, async (t) => {
  const redis = await startRedis(t)
  const make = async (): Promise<{ app: FastifyInstance, adapter: RedisAdapter }> => {
    const adapter = new RedisAdapter({ url: redis.url, prefix: 'newest' })
    const app = await buildApp(t, { adapter, reconnect: { secret: 'newest-session-secret-0123456789' } }, app => {
      app.get('/ws', { websocket: true, config: { ws: { reconnect: true } } }, () => {})
    })
    return { app, adapter }
  }
  const { app: x, adapter: ax } = await make()
  const { app: y, adapter: ay } = await make()
  const { app: z } = await make()
  const first = await connect(x, '/ws')
  const w0 = await first.json<Welcome>()
  const id = w0.clientId
  await new Promise(resolve => setTimeout(resolve, 30))
  await ax.subscriber.unsubscribe(ax.channel)
  await ay.subscriber.unsubscribe(ay.channel)
  const second = await connect(y, `/ws?resume=${w0.token}&offset=${w0.offset}`)
  const w1 = await second.json<Welcome>()
  y.wsManager.join(id, 'later')
  await new Promise(resolve => setTimeout(resolve, 30))
  t.equal(x.wsManager.getConnectionCount(), 1, 'x still holds its half-open socket')
  const third = await connect(z, `/ws?resume=${w1.token}&offset=${w1.offset}`)
  t.match(await third.json<Welcome>(), { clientId: id, resumed: true })
  t.same([...z.wsManager.getConnection(id)!.rooms], ['later'], 'y\'s (generation 1), not x\'s (generation 0)')
  for (const client of [first, second, third]) client.ws.terminate()
})
