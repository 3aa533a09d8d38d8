import { test } from 'tap'
import Fastify from 'fastify'
import WebSocket from 'ws'
import { Writable } from 'node:stream'
import wsStabilizer, { MemoryAdapter, resolveOptions } from '../plugin.ts'
import { Registry } from '../lib/registry.ts'
import { checkConnectionLimits } from '../lib/limits.ts'
import { awaitClosed } from '../lib/shutdown.ts'
import { defaultRouteSettings } from '../lib/route-options.ts'
import { buildApp, connect, until, urlOf } from './helpers.ts'

test('a protocol error (invalid UTF-8) closes only that socket with 1007', async (t) => {
  const reasons: string[] = []
  const app = await buildApp(t, {}, app => { app.get('/ws', { websocket: true }, () => {}) })
  app.wsManager.on('disconnect', (_c, info) => reasons.push(info.disconnectReason))
  const bystander = await connect(app, '/ws')
  const bad = await connect(app, '/ws')
  bad.ws.send(Buffer.from([0xff, 0xfe]), { binary: false })
  t.equal((await bad.closed).code, 1007)
  await until(() => reasons.length === 1)
  t.same(reasons, ['protocol_error'])
  t.equal((await app.wsManager.broadcast('ok')).succeeded, 1)
  t.equal(await bystander.next(), 'ok')
  await bystander.close()
})

test('ws\' own maxPayload check (no route raised it) closes with 1009 as message_too_large', async (t) => {
  const reasons: string[] = []
  const app = await buildApp(t, { limits: { maxMessageSize: 64 } }, app => { app.get('/ws', { websocket: true }, () => {}) })
  app.wsManager.on('disconnect', (_c, info) => reasons.push(info.disconnectReason))
  const client = await connect(app, '/ws')
  client.send('z'.repeat(65))
  t.equal((await client.closed).code, 1009)
  await until(() => reasons.length === 1)
  t.same(reasons, ['message_too_large'])
})

test('client pings count as life', async (t) => {
  // a timeout well above the ping period, so that a busy machine's stall is not silence
  const app = await buildApp(t, { heartbeat: { interval: 40, timeout: 300 } }, app => { app.get('/ws', { websocket: true }, () => {}) })
  const client = await connect(app, '/ws', { autoPong: false })
  const timer = setInterval(() => client.ws.ping(), 20)
  const started = Date.now()
  await until(() => Date.now() - started > 900, 2000)
  clearInterval(timer)
  t.equal(client.ws.readyState, 1)
  await client.close()
})

test('sizes are counted whatever binaryType the route chose', async (t) => {
  const app = await buildApp(t, { limits: { maxMessageSize: 10 } }, app => {
    app.get('/ab', { websocket: true }, (socket, r) => { socket.binaryType = 'arraybuffer'; r.wsConnection!.on('message', () => {}) })
    app.get('/frag', { websocket: true }, (socket, r) => { socket.binaryType = 'fragments'; r.wsConnection!.on('message', () => {}) })
  })
  const ab = await connect(app, '/ab')
  const frag = await connect(app, '/frag')
  ab.send(Buffer.from([1, 2, 3]))
  frag.send(Buffer.from([1, 2, 3, 4]))
  await until(() => app.wsManager.getStats().bytesIn === 7)
  frag.send(Buffer.alloc(11))
  t.equal((await frag.closed).code, 1009, 'the size limit holds for fragments too')
  await ab.close()
})

test('conn.close(code, reason)', async (t) => {
  const app = await buildApp(t, {}, app => { app.get('/ws', { websocket: true }, (_s, r) => { r.wsConnection!.close(4100, 'go') }) })
  const client = await connect(app, '/ws')
  t.same(await client.closed, { code: 4100, reason: 'go' })
})

test('listeners that throw (close, connect, disconnect, even error) never crash the process', async (t) => {
  const lines: Array<{ msg: string }> = []
  const stream = new Writable({ write (chunk, _e, cb) { lines.push(JSON.parse(chunk.toString())); cb() } })
  const app = await buildApp(t, {}, app => {
    app.get('/ws', { websocket: true }, (_s, r) => { r.wsConnection!.on('close', () => { throw new Error('close listener') }) })
  }, { logger: { level: 'error', stream } })
  const seen: string[] = []
  app.wsManager.on('connect', () => { throw new Error('connect listener') })
  app.wsManager.on('disconnect', () => { throw new Error('disconnect listener') })
  app.wsManager.on('error', err => { seen.push(err.message); throw new Error('error listener') })
  const client = await connect(app, '/ws')
  await client.close()
  await until(() => seen.length === 3)
  t.same(seen, ['connect listener', 'close listener', 'disconnect listener'])
  t.ok(lines.some(l => l.msg === "an 'error' listener threw"))
  t.equal(app.wsManager.getConnectionCount(), 0)
})

test('shutdown: a close code ws refuses is counted as failed (terminated); an adapter that fails to close is logged', async (t) => {
  const lines: Array<{ msg: string }> = []
  const stream = new Writable({ write (chunk, _e, cb) { lines.push(JSON.parse(chunk.toString())); cb() } })
  const adapter = new class extends MemoryAdapter {
    override close (): void { throw new Error('cannot close') }
  }()
  const app = Fastify({ logger: { level: 'error', stream } })
  await app.register(wsStabilizer, { adapter })
  app.get('/ws', { websocket: true }, () => {})
  await app.listen({ port: 0, host: '127.0.0.1' })
  const client = await connect(app, '/ws')
  const report = await app.wsManager.gracefulShutdown({ closeCode: 1005, timeout: 500 })
  t.equal(report.failedCount, 1)
  t.equal((await client.closed).code, 1006)
  t.ok(lines.some(l => l.msg === 'adapter close failed'))
  await app.close()
})

test('awaitClosed counts an already closed socket as closed', async (t) => {
  const app = await buildApp(t, {}, app => { app.get('/ws', { websocket: true }, () => {}) })
  const ws = new WebSocket(urlOf(app, '/ws'))
  await new Promise(resolve => ws.once('open', resolve))
  ws.close()
  await new Promise(resolve => ws.once('close', resolve))
  t.same(await awaitClosed([ws], 100), { clean: 1, terminated: 0 })
})

test('limits: a route cap at registration time (a race past the pre-upgrade check)', async (t) => {
  const route = { ...defaultRouteSettings(resolveOptions({})), url: '/r', routeMaxConnections: 1, connections: 1 }
  const refusal = checkConnectionLimits(new Registry(), route, 0, undefined, undefined)
  t.match(refusal, { reason: 'connection_limit', code: 1013, message: 'route /r is at maxConnections (1)' })
})

test('option values that JSON cannot show are still named', async (t) => {
  t.throws(() => resolveOptions({ heartbeat: { interval: 10n as unknown as number } }), { message: /got `10`/ })
})

test('identify returning bad shapes refuses the upgrade with 500', async (t) => {
  const shapes: Record<string, unknown> = { str: 'x', user: { userId: 5 }, meta: { metadata: 'x' }, empty: { clientId: '' } }
  const app = await buildApp(t, {}, app => {
    app.get('/ws', { websocket: true, config: { ws: { identify: r => shapes[(r.query as { s: string }).s] as undefined } } }, () => {})
  })
  for (const s of Object.keys(shapes)) {
    await t.rejects(connect(app, `/ws?s=${s}`), { message: 'Unexpected server response: 500' }, s)
  }
  t.equal(app.wsManager.getConnectionCount(), 0)
})

test('plugin: logLevel, a route\'s own preHandler runs before identify, an explicit HEAD websocket route', async (t) => {
  const lines: Array<{ msg: string, level: number }> = []
  const stream = new Writable({ write (chunk, _e, cb) { lines.push(JSON.parse(chunk.toString())); cb() } })
  const order: string[] = []
  const app = await buildApp(t, { logLevel: 'warn' }, app => {
    app.get('/ws', {
      websocket: true,
      preHandler: async () => { order.push('route preHandler') },
      config: { ws: { identify: () => { order.push('identify'); return undefined } } }
    }, () => {})
    app.route({ method: 'HEAD', url: '/head', websocket: true, handler: () => {} })
  }, { logger: { level: 'info', stream } })
  const client = await connect(app, '/ws')
  t.same(order, ['route preHandler', 'identify'])
  t.notOk(lines.some(l => l.msg === 'websocket connected'), 'info lines of the plugin are below its level')
  t.ok(lines.some(l => l.msg === 'incoming request'), 'the app keeps its own level')
  t.equal((await app.inject({ method: 'HEAD', url: '/head' })).statusCode, 404)
  await client.close()
})

test('Registry.remove is identity-checked: another object with the same clientId is not removed', async (t) => {
  const app = await buildApp(t, {}, app => { app.get('/ws', { websocket: true, config: { ws: { identify: () => ({ clientId: 'same', userId: 'u' }) } } }, () => {}) })
  const client = await connect(app, '/ws')
  const registered = app.wsManager.getConnection('same')!
  const registry = new Registry()
  registry.add(registered)
  const stale = Object.create(registered) as typeof registered
  t.equal(stale.id, 'same')
  t.equal(registry.remove(stale), false)
  t.equal(registry.get('same'), registered)
  t.equal(registry.userConnections('u').size, 1)
  t.equal(registry.remove(registered), true)
  t.equal(registry.size, 0)
  t.equal(registry.userCount, 0)
  await client.close()
})

test('an upgrade that passed the pre-upgrade check while a shutdown began is refused at registration', async (t) => {
  let release!: () => void
  const gate = new Promise<void>(resolve => { release = resolve })
  let entered!: () => void
  const inIdentify = new Promise<void>(resolve => { entered = resolve })
  const app = await buildApp(t, { shutdown: { timeout: 200, closeCode: 1001 } }, app => {
    app.get('/ws', { websocket: true, config: { ws: { identify: async () => { entered(); await gate; return undefined } } } }, () => {})
  })
  const pending = connect(app, '/ws')
  await inIdentify
  const shutdown = app.wsManager.gracefulShutdown()
  release()
  const client = await pending
  t.equal((await client.closed).code, 1001)
  t.equal(app.wsManager.getConnectionCount(), 0)
  t.equal(app.wsManager.getStats().connectsTotal, 0)
  await shutdown
})

test('connection details: off() of close listeners and unknown listeners, close twice, state', async (t) => {
  const calls: string[] = []
  const app = await buildApp(t, {}, app => {
    app.get('/ws', { websocket: true }, (_s, r) => {
      const conn = r.wsConnection!
      const a = (): void => { calls.push('a') }
      const b = (): void => { calls.push('b') }
      conn.on('close', a).on('close', b).off('close', a).off('close', () => {}).off('message', () => {})
      t.equal(conn.state, 'open')
      conn.close(4000, 'first')
      conn.close(4001, 'second')
      t.equal(conn.state, 'closed')
    })
  })
  const client = await connect(app, '/ws')
  t.same(await client.closed, { code: 4000, reason: 'first' })
  t.same(calls, ['b'])
})

test('queued messages wait for a listener that stays: one added and removed before the flush does not take them', async (t) => {
  const got: string[] = []
  const app = await buildApp(t, {}, app => {
    app.get('/ws', { websocket: true }, async (_s, r) => {
      const conn = r.wsConnection!
      await new Promise(resolve => setTimeout(resolve, 30))
      const passing = (): void => { got.push('passing') }
      conn.on('message', passing)
      conn.off('message', passing)
      await new Promise(resolve => setTimeout(resolve, 10))
      conn.on('message', d => got.push(d.toString()))
    })
  })
  const client = await connect(app, '/ws')
  client.send('one')
  client.send('two')
  await until(() => got.length === 2)
  t.same(got, ['one', 'two'])
  await client.close()
})

test('a listener that throws something that is not an Error is still reported as one', async (t) => {
  const errors: Error[] = []
  const app = await buildApp(t, {}, app => {
    app.get('/ws', { websocket: true }, (_s, r) => {
      // eslint-disable-next-line no-throw-literal
      r.wsConnection!.on('message', () => { throw 'a string' })
    })
  })
  app.wsManager.on('error', err => errors.push(err))
  const client = await connect(app, '/ws')
  client.send('x')
  await until(() => errors.length === 1)
  t.ok(errors[0] instanceof Error)
  t.equal(errors[0].message, 'a string')
  await client.close()
})

test('manager: start() twice is harmless; register() without rooms; the heartbeat re-arms after stop/start with connections', async (t) => {
  const app = await buildApp(t, { heartbeat: { interval: 30, timeout: 90 } }, app => {
    app.get('/raw', { websocket: true, config: { ws: false } }, (socket) => { app.wsManager.register(socket, { clientId: 'manual' }) })
  })
  await app.wsManager.start()
  const client = await connect(app, '/raw', { autoPong: false })
  t.same([...app.wsManager.getConnection('manual')!.rooms], [])
  app.wsManager.heartbeat.stop()
  t.notOk(app.wsManager.heartbeat.running)
  app.wsManager.heartbeat.start()
  t.ok(app.wsManager.heartbeat.running)
  t.equal((await client.closed).code, 1006, 'the re-armed heartbeat still finds the silent client')
})

test('plugin: a websocket route declared with a method array; @fastify/websocket registered with matching options gives no warning', async (t) => {
  const lines: Array<{ msg: string }> = []
  const stream = new Writable({ write (chunk, _e, cb) { lines.push(JSON.parse(chunk.toString())); cb() } })
  const app = Fastify({ logger: { level: 'warn', stream } })
  const fastifyWebsocket = (await import('@fastify/websocket')).default
  // closeTimeout is a ws 8.19+ option that @types/ws does not list yet
  const wsOptions = { maxPayload: 1000, closeTimeout: 1000 }
  await app.register(fastifyWebsocket, { options: wsOptions })
  await app.register(wsStabilizer, { limits: { maxMessageSize: 1000 }, closeTimeout: 1000 })
  app.route({ method: ['GET'], url: '/ws', websocket: true, handler: () => {} })
  t.after(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.same(lines, [])
  const client = await connect(app, '/ws')
  t.equal(app.wsManager.getConnectionCount(), 1)
  await client.close()
})

test('options: a function where a value belongs, and a non-object', async (t) => {
  t.throws(() => resolveOptions({ metrics: (() => 1) as unknown as boolean }), { message: /`metrics` to be a boolean, got `a function`/ })
  t.throws(() => resolveOptions([] as unknown as object), { message: /Expected `options` to be an object, got `\[\]`/ })
  t.throws(() => resolveOptions(5 as unknown as object), { message: /Expected `options` to be an object, got `5`/ })
  t.equal(resolveOptions(undefined).heartbeat.interval, 30_000)
  t.throws(() => resolveOptions({ compression: Symbol('zip') as unknown as 'none' }), { message: /`compression` to be `none` or `deflate`, got `Symbol\(zip\)`/ })
})
