import { test, type Test as Tap } from 'tap'
import WebSocket from 'ws'
import type { FastifyInstance } from 'fastify'
import { RedisAdapter } from '../lib/adapters/redis.ts'
import { buildApp, until, urlOf } from './helpers.ts'
import { openWelcomed, type Welcome } from './welcomed.ts'
import { redisAvailable, startRedis } from './redis-server.ts'

/*
 * A resume on another instance whose welcome never arrived. The client resumed on b a session
 * of a: b logged the entries it missed of a's log again as a merge, and its welcome put the
 * client at the merge, in b's log. The client never got that welcome, so it still holds the
 * token and the offset it had on a. When it comes back with them, the offset is one of a's log
 * and must be read as such: the replay is what it missed since, once each and in order, not
 * what b's log holds after a number that meant something else.
 */

const skip = !redisAvailable() && 'redis-server is not installed (apt-get install -y redis-server)'
const SECRET = 'welcome-lost-elsewhere-0123456789'

async function instance (t: Tap, url: string): Promise<FastifyInstance> {
  return await buildApp(t, { adapter: new RedisAdapter({ url, prefix: 'wle' }), reconnect: { secret: SECRET }, heartbeat: { enabled: false } }, app => {
    app.get('/ws', { websocket: true, config: { ws: { reconnect: { maxDisconnect: 60_000 }, rooms: ['all'] } } }, () => {})
  })
}

const open = openWelcomed

const resumeUrl = (app: FastifyInstance, w: Welcome): string => `${urlOf(app, '/ws')}?resume=${encodeURIComponent(w.token)}&offset=${w.offset}`
const messages = (frames: string[]): unknown[] => frames.slice(1).map(f => JSON.parse(f) as { data: unknown }).map(f => f.data)

async function vanish (app: FastifyInstance, socket: WebSocket): Promise<void> {
  socket.terminate()
  await until(() => app.wsManager.getConnectionCount() === 0)
}

/**
 * The client left a, resumed on b, and that connection went before the client was heard
 * from; then it comes back to `back` (b again, or a third instance) with the token it used
 * (its welcome lost) or with the one the welcome carried (the welcome arrived).
 */
async function lostThenBack (t: Tap, where: 'same' | 'third', token: 'used' | 'welcome'): Promise<void> {
  const redis = await startRedis(t)
  const a = await instance(t, redis.url)
  // a's log runs ahead of b's, which starts after these: the offsets of the two logs mean different messages
  for (let i = 0; i < 5; i++) a.wsManager.broadcast({ other: i }, { room: 'other' })
  const b = await instance(t, redis.url)

  const first = await open(t, urlOf(a, '/ws'))
  t.equal(first.welcome.offset, 5)
  await vanish(a, first.socket)
  a.wsManager.broadcast({ missed: 1 }, { room: 'all' })

  const lost = await open(t, resumeUrl(b, first.welcome))
  t.match(lost.welcome, { resumed: true, replayed: 1 })
  await until(() => lost.frames.length > 1)
  t.same(messages(lost.frames), [{ missed: 1 }])
  await vanish(b, lost.socket)
  b.wsManager.broadcast({ missed: 2 }, { room: 'all' })

  const back = where === 'same' ? b : await instance(t, redis.url)
  // the welcome that arrived came with the replay: the client is at its last frame's offset, in b's log
  const held = token === 'used' ? first.welcome : { ...lost.welcome, offset: (JSON.parse(lost.frames.at(-1)!) as { offset: number }).offset }
  const expected = token === 'used' ? [{ missed: 1 }, { missed: 2 }] : [{ missed: 2 }]
  const again = await open(t, resumeUrl(back, held))
  t.match(again.welcome, { resumed: true, replayed: expected.length }, `the ${token === 'used' ? 'token it used' : "welcome's token"} resumes`)
  // what it missed, then one more to show that nothing else was on the way
  back.wsManager.broadcast({ live: 3 }, { room: 'all' })
  await until(() => messages(again.frames).some(m => (m as { live?: number }).live === 3))
  t.same(messages(again.frames), [...expected, { live: 3 }], 'what it missed since it last had a message, once each, in order')
  await vanish(back, again.socket)
}

test('a resume elsewhere whose welcome was lost: back on that instance with the first instance\'s offset, it gets what it missed, once, in order', { skip }, async (t) => {
  await lostThenBack(t, 'same', 'used')
})

test('the same, back on a third instance', { skip }, async (t) => {
  await lostThenBack(t, 'third', 'used')
})

test('the welcome did arrive: its token and offset, of the second instance\'s log, resume there', { skip }, async (t) => {
  await lostThenBack(t, 'same', 'welcome')
})

test('the welcome did arrive: and on a third instance', { skip }, async (t) => {
  await lostThenBack(t, 'third', 'welcome')
})
