import { test } from 'tap'
import { Redis } from 'ioredis'
import { RedisAdapter } from '../lib/adapters/redis.ts'
import { buildApp, connect, until } from './helpers.ts'
import { redisAvailable, startRedis } from './redis-server.ts'

/*
 * Each instance's registry of its connections in Redis (`<prefix>:presence:{<instance>}`:
 * clientId → user and rooms; what another instance resumes from when this one died): the
 * connections registered in one turn of the event loop are written with one command at its
 * end. A connection gone within that turn leaves nothing, and one that joined rooms meanwhile
 * is written with them.
 */

const skip = !redisAvailable() && 'redis-server is not installed (apt-get install -y redis-server)'

test('the connections of one turn are written together, with their rooms then; one gone within the turn leaves no entry', { skip }, async (t) => {
  const redis = await startRedis(t)
  const adapter = new RedisAdapter({ url: redis.url, prefix: 'entries' })
  const app = await buildApp(t, { adapter }, app => {
    app.get('/raw', { websocket: true, config: { ws: false } }, (socket, request) => {
      const id = (request.query as { id: string }).id
      const conn = app.wsManager.register(socket, { clientId: id, userId: `user-${id}` })
      // in the turn it was registered
      if (id === 'gone') conn.close(4000, 'at once')
      if (id === 'joined') conn.join('later')
    })
  })
  const reader = new Redis(redis.url)
  t.teardown(() => reader.disconnect())
  const key = `entries:presence:{${app.wsManager.instanceId}}`
  const users = `entries:users:{${app.wsManager.instanceId}}`

  const kept = await connect(app, '/raw?id=kept')
  const joined = await connect(app, '/raw?id=joined')
  const gone = await connect(app, '/raw?id=gone')
  t.equal((await gone.closed).code, 4000)
  await until(async () => (await reader.hlen(key)) === 2, 2000, 'the two entries')
  const entries = await reader.hgetall(key)
  t.same(Object.keys(entries).sort(), ['joined', 'kept'], 'nothing of the connection gone within its turn')
  t.same(JSON.parse(entries.joined).r, ['later'], 'the rooms joined before the write')
  t.same(await reader.hgetall(users), { 'user-joined': '1', 'user-kept': '1' }, 'and no count of its user')
  t.ok(await reader.pttl(key) > 0, 'the registry expires')
  await kept.close()
  await joined.close()
  await until(async () => (await reader.hlen(key)) === 0, 2000, 'the entries to go')
})
