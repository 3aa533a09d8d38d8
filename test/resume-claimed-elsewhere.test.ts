import { test, type Test as Tap } from 'tap'
import type { FastifyInstance, preHandlerAsyncHookHandler } from 'fastify'
import type { WsAdapter as Adapter } from '../lib/adapters/adapter.ts'
import { MemoryAdapter, MemoryBus } from '../lib/adapters/memory.ts'
import { RedisAdapter } from '../lib/adapters/redis.ts'
import { buildApp, until, urlOf } from './helpers.ts'
import { openWelcomed, rawUpgrade, resumePath } from './welcomed.ts'
import { redisAvailable, startRedis } from './redis-server.ts'

/*
 * A client past its open timeout tries again, and a load balancer may send the new try to
 * another instance while the first one is still being looked up where it went: the token's
 * nonce is claimed there, and the session taken. The new try waits (a while) for that one
 * to give both back once its client is seen gone, then resumes with them, instead of
 * failing `invalid` while the first gives them back to nobody.
 */

const SECRET = 'claimed-elsewhere-secret-0123456'

interface Instance {
  app: FastifyInstance
  lines: string[]
  /** Holds the next upgrades after the plugin's preHandler, until `release`. */
  hold: () => void
  /** Resolves when a held upgrade has passed the plugin's preHandler (its token claimed, its session taken). */
  looked: () => Promise<void>
  release: () => void
}

/** An instance (with `hold`: one whose upgrades can be held after the plugin's preHandler, its lookup). */
async function instance (t: Tap, adapter: Adapter, hold: boolean): Promise<Instance> {
  let release = (): void => {}
  let gate: Promise<void> | undefined
  let looked = (): void => {}
  let lookedUp: Promise<void> = Promise.resolve()
  const wait = async (): Promise<void> => {
    if (gate === undefined) return
    looked()
    await gate
  }
  const lines: string[] = []
  const app = await buildApp(t, { reconnect: { secret: SECRET }, heartbeat: { enabled: false }, adapter }, app => {
    // the app's own preHandler, after the plugin's: the lookup is done when it runs
    if (hold) {
      app.addHook('onRoute', route => {
        route.preHandler = [...[route.preHandler ?? []].flat(), wait as preHandlerAsyncHookHandler]
      })
    }
    app.get('/ws', { websocket: true, config: { ws: { reconnect: { maxDisconnect: 60_000 }, rooms: ['all'] } } }, () => {})
  }, { logger: { level: 'info', stream: { write: (line: string) => { lines.push(line) } } } })
  t.teardown(() => release())
  const holdNext = (): void => {
    gate = new Promise<void>(resolve => { release = resolve })
    lookedUp = new Promise<void>(resolve => { looked = resolve })
  }
  return { app, lines, hold: holdNext, looked: async () => { await lookedUp }, release: () => release() }
}

async function claimedElsewhere (t: Tap, adapters: [Adapter, Adapter]): Promise<void> {
  const a = await instance(t, adapters[0], true)
  const b = await instance(t, adapters[1], false)
  const first = await openWelcomed(t, urlOf(a.app, '/ws'))
  first.socket.terminate()
  await until(() => a.app.wsManager.getConnectionCount() === 0)
  await a.app.wsManager.broadcast({ missed: 1 }, { room: 'all' })

  // the first try, on a: looked up (claimed, taken), then held
  a.hold()
  const dropped = rawUpgrade(t, a.app, resumePath(first.welcome))
  await a.looked()
  // the client gives up on it and tries b, with the same token
  let answered = false
  const again = openWelcomed(t, urlOf(b.app, resumePath(first.welcome))).then(w => { answered = true; return w })
  await new Promise(resolve => setTimeout(resolve, 200))
  t.notOk(answered, 'b waits while the token is claimed on a')
  // a sees its client gone: what the lookup took goes back
  dropped.destroy()
  const second = await again
  t.match(second.welcome, { resumed: true, replayed: 1 }, 'b resumes with the token and the session a gave back')
  await until(() => second.frames.length > 1)
  t.match(JSON.parse(second.frames[1]), { type: 'message', data: { missed: 1 } }, 'with the message missed on a')
  t.same([...b.app.wsManager.connections()][0].rooms, new Set(['all']), 'and its rooms')
  a.release()
  t.equal(a.app.wsManager.getConnectionCount(), 0, 'the dropped try registered nothing on a')

  // once the resumed client is heard from, the token is spent: a try with it fails, after the wait
  second.socket.send('hello')
  await until(() => [...b.app.wsManager.connections()][0]?.stats.messagesIn === 1)
  const reused = await openWelcomed(t, urlOf(a.app, resumePath(first.welcome)))
  t.match(reused.welcome, { resumed: false, resumeFailed: 'invalid' }, 'a spent token is still spent')
}

test('a try on another instance while the first is looked up waits for the token: MemoryBus', async (t) => {
  const bus = new MemoryBus()
  await claimedElsewhere(t, [new MemoryAdapter({ bus }), new MemoryAdapter({ bus })])
})

test('the same through Redis', { skip: !redisAvailable() && 'redis-server is not installed' }, async (t) => {
  const redis = await startRedis(t)
  await claimedElsewhere(t, [new RedisAdapter({ url: redis.url, prefix: 'ce' }), new RedisAdapter({ url: redis.url, prefix: 'ce' })])
})

test('a try whose client goes while it waits for a claim held elsewhere stops waiting: it never takes what is given back', async (t) => {
  const bus = new MemoryBus()
  const a = await instance(t, new MemoryAdapter({ bus }), true)
  const b = await instance(t, new MemoryAdapter({ bus }), false)
  const first = await openWelcomed(t, urlOf(a.app, '/ws'))
  first.socket.terminate()
  await until(() => a.app.wsManager.getConnectionCount() === 0)
  a.hold()
  const dropped = rawUpgrade(t, a.app, resumePath(first.welcome))
  await a.looked()
  const requests = b.lines.filter(l => l.includes('incoming request')).length
  const waiting = rawUpgrade(t, b.app, resumePath(first.welcome))
  await until(() => b.lines.filter(l => l.includes('incoming request')).length > requests)
  await new Promise(resolve => setTimeout(resolve, 100))
  // b's client goes, then a's: a gives the token back while b's try would still be in its wait
  waiting.destroy()
  await new Promise(resolve => setTimeout(resolve, 100))
  dropped.destroy()
  await until(() => a.lines.some(l => l.includes('resume abandoned before the upgrade')), 2000, 'a\'s give-back')
  await new Promise(resolve => setTimeout(resolve, 200))
  t.notOk(b.lines.some(l => l.includes('resume abandoned before the upgrade')), 'b never claimed the token for a client that was gone')
  const again = await openWelcomed(t, urlOf(b.app, resumePath(first.welcome)))
  t.match(again.welcome, { resumed: true }, 'the token is free for the next try')
})
