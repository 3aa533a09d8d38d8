import { test, type Test as Tap } from 'tap'
import type { Socket } from 'node:net'
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import WebSocket from 'ws'
import type { FastifyInstance, preHandlerAsyncHookHandler } from 'fastify'
import type { WsStabilizerOptions } from '../plugin.ts'
import { RedisAdapter } from '../lib/adapters/redis.ts'
import { buildApp, until, urlOf } from './helpers.ts'
import { openWelcomed, rawUpgrade, resumePath, type Welcome } from './welcomed.ts'
import { redisAvailable, startRedis } from './redis-server.ts'

/*
 * A resume is looked up before the upgrade: the token's nonce is claimed and the session
 * taken from the store. A client that gives up meanwhile (its open timeout, in a reconnect
 * storm where the lookup waits on a loaded Redis) comes back with the same token: what the
 * lookup took was given back, so that try resumes, with its rooms and its replay.
 */

const SECRET = 'abandoned-upgrade-secret-0123456'

/** Where the test holds an upgrade: in identify (before the lookup) or in a preHandler after it. */
type Hold = 'before-lookup' | 'after-lookup'

interface Held {
  app: FastifyInstance
  lines: string[]
  /** Holds the next upgrades where the server was built to, until `release`. */
  hold: () => void
  release: () => void
}

async function server (t: Tap, where: Hold, options: WsStabilizerOptions = {}): Promise<Held> {
  let gate: Promise<void> | undefined
  let release = (): void => {}
  const wait = async (): Promise<void> => { await gate }
  const lines: string[] = []
  const app = await buildApp(t, { reconnect: { secret: SECRET }, heartbeat: { enabled: false }, ...options }, app => {
    // a hook of the app's own, added after the plugin's: its preHandler runs after the plugin's
    if (where === 'after-lookup') {
      app.addHook('onRoute', route => {
        route.preHandler = [...[route.preHandler ?? []].flat(), wait as preHandlerAsyncHookHandler]
      })
    }
    const identify = where === 'before-lookup' ? async () => { await wait(); return {} } : undefined
    app.get('/ws', { websocket: true, config: { ws: { reconnect: { maxDisconnect: 60_000 }, rooms: ['all'], identify } } }, () => {})
  }, { logger: { level: 'info', stream: { write: (line: string) => { lines.push(line) } } } })
  t.teardown(() => release())
  const hold = (): void => { gate = new Promise<void>(resolve => { release = resolve }) }
  return { app, lines, hold, release: () => release() }
}

const open = openWelcomed

/** A session with one missed message, and a try to resume it held by the app where the server was built to hold it. */
async function heldTry (t: Tap, where: Hold, options?: WsStabilizerOptions): Promise<{ held: Held, first: Welcome, dropped: Socket, serverSide: () => Duplex | undefined }> {
  const held = await server(t, where, options)
  const { app, lines } = held
  const first = await open(t, urlOf(app, '/ws'))
  first.socket.terminate()
  await until(() => app.wsManager.getConnectionCount() === 0)
  app.wsManager.broadcast({ missed: 1 }, { room: 'all' })
  held.hold()
  let serverSide: Duplex | undefined
  app.server.once('upgrade', (_req: IncomingMessage, socket: Duplex) => { serverSide = socket })
  const requests = lines.filter(l => l.includes('incoming request')).length
  const dropped = rawUpgrade(t, app, resumePath(first.welcome))
  await until(() => lines.filter(l => l.includes('incoming request')).length > requests)
  return { held, first: first.welcome, dropped, serverSide: () => serverSide }
}

async function abandoned (t: Tap, where: Hold, options?: WsStabilizerOptions): Promise<void> {
  // held: before its lookup (in identify) or after it (in a preHandler of the app's)
  const { held, first: welcome, dropped, serverSide: side } = await heldTry(t, where, options)
  const { app, lines } = held
  dropped.destroy()
  // the server has seen the client go (not read after the upgrade event, its socket ends without closing)
  await until(() => side()?.readableEnded === true || side()?.destroyed === true, 2000, 'the end of the dropped socket')
  if (where === 'after-lookup') await until(() => lines.some(l => l.includes('resume abandoned before the upgrade')), 2000, 'the give-back logged')
  held.release()
  await until(() => lines.some(l => l.includes('resume abandoned before the upgrade')), 2000, 'the give-back logged')
  t.equal(app.wsManager.getConnectionCount(), 0, 'the dropped upgrade registered nothing')

  const again = await open(t, urlOf(app, resumePath(welcome)))
  t.match(again.welcome, { resumed: true, replayed: 1 }, 'the same token resumes, and the replay comes')
  t.equal(again.welcome.offset, welcome.offset)
  await until(() => again.frames.length > 1)
  t.match(JSON.parse(again.frames[1]), { type: 'message', data: { missed: 1 } })
  t.same([...app.wsManager.connections()][0].rooms, new Set(['all']), 'with its rooms')

  // the resume that did happen spends the token as ever, once the client is heard from
  again.socket.send('hello')
  await until(() => [...app.wsManager.connections()][0]?.stats.messagesIn === 1)
  again.socket.terminate()
  await until(() => app.wsManager.getConnectionCount() === 0)
  const reused = await open(t, urlOf(app, resumePath(welcome)))
  t.match(reused.welcome, { resumed: false, resumeFailed: 'invalid' }, 'after a resume that happened the token is spent')
  reused.socket.terminate()
}

test('an upgrade dropped after its resume was looked up: the token resumes on the next try (memory adapter)', async (t) => {
  await abandoned(t, 'after-lookup')
})

test('an upgrade dropped during its lookup: the same (memory adapter)', async (t) => {
  await abandoned(t, 'before-lookup')
})

test('an upgrade dropped after its lookup, Redis adapter: the nonce is deleted, the session saved again', { skip: !redisAvailable() && 'redis-server is not installed' }, async (t) => {
  const redis = await startRedis(t)
  await abandoned(t, 'after-lookup', { adapter: new RedisAdapter({ url: redis.url, prefix: 'ab' }) })
})

test('an upgrade dropped during its lookup, Redis adapter', { skip: !redisAvailable() && 'redis-server is not installed' }, async (t) => {
  const redis = await startRedis(t)
  await abandoned(t, 'before-lookup', { adapter: new RedisAdapter({ url: redis.url, prefix: 'ab2' }) })
})

test('the client still registered here (half-open) when its resume was dropped: the token is given back, the connection kept', async (t) => {
  const held = await server(t, 'after-lookup')
  const { app, lines } = held
  const first = await open(t, urlOf(app, '/ws'))
  held.hold()
  let serverSide: Duplex | undefined
  app.server.once('upgrade', (_req: IncomingMessage, socket: Duplex) => { serverSide = socket })
  const dropped = rawUpgrade(t, app, resumePath(first.welcome))
  await until(() => serverSide !== undefined)
  dropped.destroy()
  await until(() => lines.some(l => l.includes('resume abandoned before the upgrade')), 2000, 'the give-back logged')
  held.release()
  t.equal(app.wsManager.getConnectionCount(), 1, 'the connection it would have replaced is still there')
  t.equal(first.socket.readyState, WebSocket.OPEN)

  const again = await open(t, urlOf(app, resumePath(first.welcome)))
  t.match(again.welcome, { resumed: true }, 'the same token resumes')
  await until(() => first.socket.readyState === WebSocket.CLOSED, 2000, 'the half-open connection replaced')
  t.equal(app.wsManager.getConnectionCount(), 1)
  again.socket.terminate()
})

async function secondTryWaits (t: Tap, options?: WsStabilizerOptions): Promise<void> {
  const { held, first, dropped, serverSide } = await heldTry(t, 'after-lookup', options)
  const { app, lines } = held
  const second = open(t, urlOf(app, resumePath(first)))
  // the second try has reached the plugin's preHandler and waits there
  await until(() => lines.filter(l => l.includes('incoming request')).length >= 3)
  dropped.destroy()
  await until(() => serverSide()?.readableEnded === true || serverSide()?.destroyed === true, 2000, 'the end of the dropped socket')
  await until(() => lines.some(l => l.includes('resume abandoned before the upgrade')), 2000, 'the give-back logged')
  held.release()
  const again = await second
  t.match(again.welcome, { resumed: true, replayed: 1 }, 'the second try resumes, with the replay')
  again.socket.terminate()
}

test('a second try while the first is still held after its lookup waits for it: the first given back, the second resumes', async (t) => {
  await secondTryWaits(t)
})

test('the same with the Redis adapter', { skip: !redisAvailable() && 'redis-server is not installed' }, async (t) => {
  const redis = await startRedis(t)
  await secondTryWaits(t, { adapter: new RedisAdapter({ url: redis.url, prefix: 'ab3' }) })
})

test('a second try while the first goes on to its upgrade: the first resumes, the token stays single-use', async (t) => {
  const { held, first, dropped } = await heldTry(t, 'after-lookup')
  const { app, lines } = held
  const frames: string[] = []
  dropped.on('data', chunk => frames.push(String(chunk)))
  const second = open(t, urlOf(app, resumePath(first)))
  await until(() => lines.filter(l => l.includes('incoming request')).length >= 3)
  held.release()
  await until(() => frames.join('').includes('"type":"welcome"'), 2000, 'the first try welcomed')
  t.match(frames.join(''), /HTTP\/1\.1 101[\s\S]*"resumed":true/, 'the first try resumed')
  const again = await second
  t.match(again.welcome, { resumed: false, resumeFailed: 'invalid' }, 'the second try finds the token spent')
  t.equal(lines.filter(l => l.includes('resume abandoned before the upgrade')).length, 0, 'nothing given back')
  again.socket.terminate()
  dropped.destroy()
})
