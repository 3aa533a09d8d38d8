import { test } from 'tap'
import { Writable } from 'node:stream'
import { buildInjectedApp, inject } from './helpers.ts'

/* The upgrade of a managed route: the route's own hooks, then identify (what it may return, how it refuses), then registration. */

test('identify: async, with userId and metadata; a thrown statusCode refuses the upgrade', async (t) => {
  const app = await buildInjectedApp(t, {}, app => {
    app.get<{ Querystring: { user?: string } }>('/ws', {
      websocket: true,
      config: {
        ws: {
          identify: async (request) => {
            await new Promise(resolve => setImmediate(resolve))
            const user = (request.query as { user?: string }).user
            if (user === 'mallory') throw Object.assign(new Error('go away'), { statusCode: 401 })
            if (user === 'broken') return { clientId: 42 } as unknown as { clientId: string }
            return { clientId: `c-${user}`, userId: user, metadata: { plan: 'pro' } }
          }
        }
      }
    }, () => {})
  })
  const ok = await inject(app, '/ws?user=ann')
  const conn = app.wsManager.getConnection('c-ann')!
  t.equal(conn.userId, 'ann')
  t.same(conn.metadata, { plan: 'pro' })
  await t.rejects(inject(app, '/ws?user=mallory'), { message: 'Unexpected server response: 401' })
  await t.rejects(inject(app, '/ws?user=broken'), { message: 'Unexpected server response: 500' })
  t.equal(app.wsManager.getConnectionCount(), 1)
  await ok.close()
})

test('the plugin-level identify applies where the route has none; the default clientId is a UUID', async (t) => {
  const app = await buildInjectedApp(t, { identify: () => ({ userId: 'from-plugin' }) }, app => {
    app.get('/a', { websocket: true }, () => {})
    app.get('/b', { websocket: true, config: { ws: { identify: () => undefined } } }, () => {})
  })
  const a = await inject(app, '/a')
  const b = await inject(app, '/b')
  const users = app.wsManager.getActiveConnections().map(id => app.wsManager.getConnection(id)!.userId)
  t.same(users.sort(), ['from-plugin', undefined].sort())
  for (const id of app.wsManager.getActiveConnections()) t.match(id, /^[0-9a-f-]{36}$/)
  await a.close()
  await b.close()
})

test('identify returning bad shapes refuses the upgrade with 500', async (t) => {
  const shapes: Record<string, unknown> = { str: 'x', user: { userId: 5 }, meta: { metadata: 'x' }, empty: { clientId: '' } }
  const app = await buildInjectedApp(t, {}, app => {
    app.get('/ws', { websocket: true, config: { ws: { identify: r => shapes[(r.query as { s: string }).s] as undefined } } }, () => {})
  })
  for (const s of Object.keys(shapes)) {
    await t.rejects(inject(app, `/ws?s=${s}`), { message: 'Unexpected server response: 500' }, s)
  }
  t.equal(app.wsManager.getConnectionCount(), 0)
})

test('plugin: logLevel, a route\'s own preHandler runs before identify, an explicit HEAD websocket route', async (t) => {
  const lines: Array<{ msg: string, level: number }> = []
  const stream = new Writable({ write (chunk, _e, cb) { lines.push(JSON.parse(chunk.toString())); cb() } })
  const order: string[] = []
  const app = await buildInjectedApp(t, { logLevel: 'warn' }, app => {
    app.get('/ws', {
      websocket: true,
      preHandler: async () => { order.push('route preHandler') },
      config: { ws: { identify: () => { order.push('identify'); return undefined } } }
    }, () => {})
    app.route({ method: 'HEAD', url: '/head', websocket: true, handler: () => {} })
  }, { logger: { level: 'info', stream } })
  const client = await inject(app, '/ws')
  t.same(order, ['route preHandler', 'identify'])
  t.notOk(lines.some(l => l.msg === 'websocket connected'), 'info lines of the plugin are below its level')
  t.ok(lines.some(l => l.msg === 'incoming request'), 'the app keeps its own level')
  t.equal((await app.inject({ method: 'HEAD', url: '/head' })).statusCode, 404)
  await client.close()
})
