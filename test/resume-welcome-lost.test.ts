import { test, type Test as Tap } from 'tap'
import WebSocket from 'ws'
import type { FastifyInstance } from 'fastify'
import type { WsStabilizerOptions } from '../plugin.ts'
import { RedisAdapter } from '../lib/adapters/redis.ts'
import { buildApp, until, urlOf } from './helpers.ts'
import { openWelcomed, type Welcome } from './welcomed.ts'
import { kHandshake } from '../lib/symbols.ts'
import { redisAvailable, startRedis } from './redis-server.ts'

/*
 * A drop during the resume itself: the server used up the token and sent its welcome, with
 * the next token, but the client never got it (the connection went before the client was
 * heard from). The client can only come back with the token it used: that token is given
 * back, paired with the one in the welcome; either resumes once (the resume replays what was
 * missed again) and spends the other. Once the client has been heard from (any frame, a close
 * frame too), the token it used stays used.
 */

const SECRET = 'welcome-lost-secret-0123456789ab'

async function server (t: Tap, options: WsStabilizerOptions = {}): Promise<FastifyInstance> {
  return await buildApp(t, { reconnect: { secret: SECRET }, heartbeat: { enabled: false }, ...options }, app => {
    app.get('/ws', { websocket: true, config: { ws: { reconnect: { maxDisconnect: 60_000 }, rooms: ['all'] } } }, () => {})
  })
}

const open = openWelcomed

function resumeUrl (app: FastifyInstance, welcome: Welcome, offset = welcome.offset): string {
  return `${urlOf(app, '/ws')}?resume=${encodeURIComponent(welcome.token)}&offset=${offset}`
}

/** The client leaves without a word: the server's side ends as after a network drop. */
async function vanish (app: FastifyInstance, socket: WebSocket): Promise<void> {
  socket.terminate()
  await until(() => app.wsManager.getConnectionCount() === 0)
}

async function welcomeLost (t: Tap, app: FastifyInstance): Promise<void> {
  const first = await open(t, urlOf(app, '/ws'))
  await vanish(app, first.socket)
  app.wsManager.broadcast({ missed: 1 }, { room: 'all' })

  // the resume works on the server, but its welcome (and the replay) never reach the client
  const lost = await open(t, resumeUrl(app, first.welcome))
  t.equal(lost.welcome.resumed, true)
  t.equal(lost.welcome.replayed, 1)
  await vanish(app, lost.socket)

  const again = await open(t, resumeUrl(app, first.welcome))
  t.match(again.welcome, { resumed: true, replayed: 1 }, 'the token it used is good once more, and the replay comes again')
  t.equal(again.welcome.offset, first.welcome.offset)
  await until(() => again.frames.length > 1)
  t.match(JSON.parse(again.frames[1]), { type: 'message', data: { missed: 1 } })

  // heard from: a frame from the client; after that the used token stays used
  again.socket.send('hello')
  await until(() => [...app.wsManager.connections()][0]?.stats.messagesIn === 1)
  await vanish(app, again.socket)
  const reused = await open(t, resumeUrl(app, first.welcome))
  t.match(reused.welcome, { resumed: false, resumeFailed: 'invalid' }, 'a client that was heard from cannot use its old token again')
  await vanish(app, reused.socket)

  const spent = await open(t, resumeUrl(app, lost.welcome))
  t.match(spent.welcome, { resumed: false, resumeFailed: 'invalid' }, 'the token of the lost welcome was spent with the one that was used again')
  await vanish(app, spent.socket)
  const next = await open(t, resumeUrl(app, again.welcome))
  t.match(next.welcome, { resumed: true }, 'the welcome that arrived carries the token that works')
  await vanish(app, next.socket)

  // the other way round: the welcome did arrive, but the client was gone before it said anything
  const quiet = await open(t, resumeUrl(app, next.welcome))
  t.equal(quiet.welcome.resumed, true)
  await vanish(app, quiet.socket)
  const withNew = await open(t, resumeUrl(app, quiet.welcome))
  t.match(withNew.welcome, { resumed: true }, 'the token of the welcome works')
  await vanish(app, withNew.socket)
  const withOld = await open(t, resumeUrl(app, next.welcome))
  t.match(withOld.welcome, { resumed: false, resumeFailed: 'invalid' }, 'and spent the one it was paired with')
}

test('a resume whose welcome never arrived can be made again with the same token (memory adapter)', async (t) => {
  await welcomeLost(t, await server(t))
})

test('the same with the Redis adapter (the nonce released in Redis)', { skip: !redisAvailable() && 'redis-server is not installed' }, async (t) => {
  const redis = await startRedis(t)
  await welcomeLost(t, await server(t, { adapter: new RedisAdapter({ url: redis.url, prefix: 'wl' }) }))
})

test('a ping from the client is being heard from, too', async (t) => {
  const app = await server(t)
  const first = await open(t, urlOf(app, '/ws'))
  await vanish(app, first.socket)
  const resumed = await open(t, resumeUrl(app, first.welcome))
  t.equal(resumed.welcome.resumed, true)
  const conn = [...app.wsManager.connections()][0]
  t.not(conn[kHandshake], undefined, 'not heard from yet')
  resumed.socket.ping()
  await until(() => conn[kHandshake] === undefined)
  await vanish(app, resumed.socket)
  const reused = await open(t, resumeUrl(app, first.welcome))
  t.match(reused.welcome, { resumeFailed: 'invalid' }, 'after a ping the used token stays used')
})

test('Redis down when such a connection ends: the release fails, is reported, nothing thrown', { skip: !redisAvailable() && 'redis-server is not installed' }, async (t) => {
  const redis = await startRedis(t)
  const lines: string[] = []
  const app = await buildApp(t, { reconnect: { secret: SECRET }, heartbeat: { enabled: false }, adapter: new RedisAdapter({ url: redis.url, prefix: 'wl-down' }) }, app => {
    app.get('/ws', { websocket: true, config: { ws: { reconnect: true } } }, () => {})
  }, { logger: { level: 'debug', stream: { write: (line: string) => { lines.push(line) } } } })
  const first = await open(t, urlOf(app, '/ws'))
  await vanish(app, first.socket)
  const lost = await open(t, resumeUrl(app, first.welcome))
  t.equal(lost.welcome.resumed, true)
  await redis.stop()
  await until(() => app.wsManager.health().status === 'degraded')
  await vanish(app, lost.socket)
  await until(() => lines.some(l => l.includes('token nonce not released')), 5000, 'the failure logged')
  t.equal(app.wsManager.health().status, 'degraded', 'the app carries on')
})
