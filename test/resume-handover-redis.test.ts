import { test } from 'tap'
import { Redis } from 'ioredis'
import type { FastifyInstance } from 'fastify'
import { RedisAdapter } from '../lib/adapters/redis.ts'
import { buildApp, connect, until } from './helpers.ts'
import { redisAvailable, startRedis } from './redis-server.ts'

/*
 * A connection that ends on one instance is found by a resume on another at every moment
 * of its hand-over. Another instance looks for the saved session first, then for the
 * connection in the presence registry of the instance it was on (takeOrphan). Had the
 * connection left that registry before its session was saved, a resume arriving between the two
 * would have found neither: `unknown_session`, seen 14 times in 5,000 in a rolling restart
 * (BENCHMARKS.md). Redis' MONITOR shows the order the writes are carried out in.
 */

const skip = !redisAvailable() && 'redis-server is not installed (apt-get install -y redis-server)'
const SECRET = 'handover-resume-secret-0123456789'

async function instance (t: Parameters<typeof buildApp>[0], url: string): Promise<FastifyInstance> {
  return await buildApp(t, { adapter: new RedisAdapter({ url, prefix: 'handover' }), reconnect: { secret: SECRET } }, app => {
    app.get('/ws', { websocket: true, config: { ws: { reconnect: true } } }, () => {})
  })
}

interface Welcome { type: 'welcome', clientId: string, token: string, offset: number, resumed: boolean, resumeFailed?: string }

test('a connection that ends is saved as a session before it leaves the presence registry, and resumes on another instance', { skip }, async (t) => {
  const redis = await startRedis(t)
  const a = await instance(t, redis.url)
  const b = await instance(t, redis.url)
  const client = await connect(a, '/ws')
  const welcome = await client.json<Welcome>()

  const monitor = new Redis(redis.url, { lazyConnect: true })
  t.teardown(() => monitor.disconnect())
  await monitor.connect()
  const watcher = await monitor.monitor()
  const commands: string[][] = []
  watcher.on('monitor', (_time: string, args: string[]) => commands.push(args))
  t.teardown(() => watcher.disconnect())
  // MONITOR starts with the next command: one that goes through it shows it has begun
  await until(async () => {
    await monitor.ping()
    return commands.some(c => c[0].toLowerCase() === 'ping')
  }, 2000, 'MONITOR to start')

  const sessionKey = `handover:session:{${welcome.clientId}}`
  const savedAt = (): number => commands.findIndex(c => c[0].toLowerCase() === 'evalsha' || c[0].toLowerCase() === 'eval' ? c.includes(sessionKey) : false)
  const leftAt = (): number => commands.findIndex(c => c[0].toLowerCase() === 'hdel' && c[1].startsWith('handover:presence:') && c[2] === welcome.clientId)
  client.ws.terminate()
  await until(() => savedAt() >= 0 && leftAt() >= 0, 5000, 'the session save and the presence removal')
  t.ok(savedAt() < leftAt(), `the session is saved (command ${savedAt()}) before the connection leaves the presence registry (command ${leftAt()})`)

  const back = await connect(b, `/ws?resume=${welcome.token}&offset=${welcome.offset}`)
  t.match(await back.json<Welcome>(), { type: 'welcome', clientId: welcome.clientId, resumed: true })
  await back.close()
})
