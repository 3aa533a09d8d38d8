import { test } from 'tap'
import Fastify from 'fastify'
import WebSocket from 'ws'
import { Writable } from 'node:stream'
import wsStabilizer, { MemoryAdapter, resolveOptions } from '../plugin.ts'
import { Registry } from '../lib/registry.ts'
import { checkConnectionLimits } from '../lib/limits.ts'
import { awaitClosed } from '../lib/shutdown.ts'
import { defaultRouteSettings } from '../lib/route-settings.ts'
import { buildApp, buildInjectedApp, connect, inject, until, urlOf, type TestClient } from './helpers.ts'

function byUser (id?: string): { websocket: true, config: { ws: { identify: (r: { query: unknown }) => { clientId?: string, userId?: string } } } } {
  return {
    websocket: true,
    config: { ws: { identify: (r) => { const q = r.query as { id?: string, user?: string }; return { clientId: q.id ?? id, userId: q.user } } } }
  }
}

test('maxConnections: the next upgrade gets HTTP 503 with retry-after and nothing is registered', async (t) => {
  const app = await buildApp(t, { limits: { maxConnections: 2 } }, app => { app.get('/ws', { websocket: true }, () => {}) })
  const a = await connect(app, '/ws')
  const b = await connect(app, '/ws')
  const err = await connect(app, '/ws').then(() => undefined, (e: unknown) => e as { statusCode: number, headers: Record<string, string> })
  t.equal(err?.statusCode, 503)
  t.equal(err?.headers['retry-after'], '5')
  t.equal(app.wsManager.getConnectionCount(), 2)
  t.equal(app.wsManager.getStats().rejectedTotal.connection_limit, 1)
  await a.close()
  await until(() => app.wsManager.getConnectionCount() === 1)
  const c = await connect(app, '/ws')
  t.equal(app.wsManager.getConnectionCount(), 2, 'room again once one left')
  await b.close()
  await c.close()
})

test('a route-level maxConnections caps that route only', async (t) => {
  const app = await buildApp(t, {}, app => {
    app.get('/small', { websocket: true, config: { ws: { limits: { maxConnections: 1 } } } }, () => {})
    app.get('/big', { websocket: true }, () => {})
  })
  const a = await connect(app, '/small')
  await t.rejects(connect(app, '/small'), { message: 'Unexpected server response: 503' })
  const b = await connect(app, '/big')
  const c = await connect(app, '/big')
  t.equal(app.wsManager.getConnectionCount(), 3)
  for (const x of [a, b, c]) await x.close()
})

test('maxConnectionsPerUser: the extra connection is closed with 4409, never registered; replacing does not count', async (t) => {
  const app = await buildApp(t, { limits: { maxConnectionsPerUser: 2 } }, app => {
    app.get('/ws', byUser(), (_s, request) => {
      if (!request.wsConnection!.isOpen) request.wsConnection!.on('close', info => { request.wsConnection!.metadata.refusedWith = info.code })
    })
  })
  const disconnects: string[] = []
  app.wsManager.on('disconnect', (_c, info) => disconnects.push(info.disconnectReason))
  const a1 = await connect(app, '/ws?user=ann&id=a1')
  const a2 = await connect(app, '/ws?user=ann&id=a2')
  const a3 = await connect(app, '/ws?user=ann&id=a3')
  t.same(await a3.closed, { code: 4409, reason: 'user ann is at maxConnectionsPerUser (2)' })
  t.equal(app.wsManager.getConnection('a3'), undefined)
  t.equal(app.wsManager.getUserConnections('ann').length, 2)
  t.equal(app.wsManager.getStats().rejectedTotal.user_limit, 1)
  t.same(disconnects, [], 'a refused connection was never connected, so it never disconnects')
  const bob = await connect(app, '/ws?user=bob&id=b1')
  t.ok(app.wsManager.isUserConnected('bob'))
  const again = await connect(app, '/ws?user=ann&id=a2')
  t.equal((await a2.closed).code, 4001, 'same clientId: replaced, not refused')
  t.equal(app.wsManager.getUserConnections('ann').length, 2)
  for (const c of [a1, again, bob]) await c.close()
})

test('a route-level maxConnectionsPerUser counts that route only', async (t) => {
  const app = await buildApp(t, {}, app => {
    app.get('/one', { ...byUser(), config: { ws: { ...byUser().config.ws, limits: { maxConnectionsPerUser: 1 } } } }, () => {})
    app.get('/many', byUser(), () => {})
  })
  const a = await connect(app, '/one?user=ann')
  const b = await connect(app, '/one?user=ann')
  t.equal((await b.closed).code, 4409)
  const c = await connect(app, '/many?user=ann')
  const d = await connect(app, '/many?user=ann')
  t.equal(app.wsManager.getUserConnections('ann').length, 3)
  for (const x of [a, c, d]) await x.close()
})

test('register(): a socket from an unmanaged route, limits throw ConnectionLimitExceededError', async (t) => {
  const app = await buildApp(t, { limits: { maxConnections: 1 } }, app => {
    app.get('/raw', { websocket: true, config: { ws: false } }, (socket, request) => {
      try {
        app.wsManager.register(socket, { clientId: (request.query as { id: string }).id, rooms: ['manual'], metadata: { via: 'register' } })
      } catch (err) {
        t.equal(socket.readyState, 1, 'register() throws and leaves the socket to the caller')
        socket.close(1013, (err as Error & { code: string }).code)
      }
    })
  })
  const a = await connect(app, '/raw?id=one')
  t.same(app.wsManager.getRoomMembers('manual'), ['one'])
  t.same(app.wsManager.getConnection('one')!.metadata, { via: 'register' })
  const b = await connect(app, '/raw?id=two')
  t.same(await b.closed, { code: 1013, reason: 'FST_WS_CONNECTION_LIMIT_EXCEEDED' })
  t.throws(() => app.wsManager.register(a.ws, { clientId: 42 as unknown as string }), { code: 'FST_WS_ERROR' })
  await a.close()
})

test('a message over maxMessageSize closes that socket with 1009; the others never notice', async (t) => {
  const got: string[] = []
  const app = await buildApp(t, { limits: { maxMessageSize: 100 } }, app => {
    app.get('/ws', { websocket: true }, (_s, r) => { r.wsConnection!.on('message', d => got.push(d.toString())) })
    app.get('/small', { websocket: true, config: { ws: { limits: { maxMessageSize: 10 } } } }, (_s, r) => { r.wsConnection!.on('message', d => got.push(d.toString())) })
    app.get('/large', { websocket: true, config: { ws: { limits: { maxMessageSize: 1000 } } } }, (_s, r) => { r.wsConnection!.on('message', d => got.push(d.toString())) })
  })
  const reasons: string[] = []
  app.wsManager.on('disconnect', (_c, info) => reasons.push(info.disconnectReason))
  const bystander = await connect(app, '/ws')
  const big = await connect(app, '/ws')
  big.send('x'.repeat(101))
  t.equal((await big.closed).code, 1009)
  const small = await connect(app, '/small')
  small.send('x'.repeat(11))
  t.equal((await small.closed).code, 1009, 'a route may lower the limit')
  const large = await connect(app, '/large')
  large.send('y'.repeat(500))
  await until(() => got.length === 1)
  t.equal(got[0].length, 500, 'a route may raise it')
  await until(() => reasons.length === 2)
  t.same(reasons, ['message_too_large', 'message_too_large'])
  t.equal((await app.wsManager.broadcast('fine')).succeeded, 2)
  t.equal(await bystander.next(), 'fine')
  t.equal(bystander.ws.readyState, 1)
  await bystander.close()
  await large.close()
})

test('fastify.close(): clients get 1012 with the reason', async (t) => {
  const app = Fastify()
  await app.register(wsStabilizer)
  app.get('/ws', { websocket: true }, () => {})
  await app.listen({ port: 0, host: '127.0.0.1' })
  const clients = await Promise.all([1, 2, 3].map(() => connect(app, '/ws')))
  const reasons: string[] = []
  app.wsManager.on('disconnect', (_c, info) => reasons.push(info.disconnectReason))
  await app.close()
  for (const c of clients) t.same(await c.closed, { code: 1012, reason: 'server shutting down' })
  t.same(reasons, ['server_shutdown', 'server_shutdown', 'server_shutdown'])
})

test('shutdown.closeCode 1001 is sent instead', async (t) => {
  const app = Fastify()
  await app.register(wsStabilizer, { shutdown: { closeCode: 1001, closeReason: 'bye' } })
  app.get('/ws', { websocket: true }, () => {})
  await app.listen({ port: 0, host: '127.0.0.1' })
  const client = await connect(app, '/ws')
  await app.close()
  t.same(await client.closed, { code: 1001, reason: 'bye' })
})

function pauseReading (client: TestClient): void {
  (client.ws as unknown as { _socket: { pause (): void } })._socket.pause()
}

test('fastify.close() is bounded with a client that never answers the close frame', async (t) => {
  const app = Fastify()
  await app.register(wsStabilizer, { shutdown: { timeout: 200 }, closeTimeout: 10_000 })
  app.get('/ws', { websocket: true }, () => {})
  await app.listen({ port: 0, host: '127.0.0.1' })
  const polite = await connect(app, '/ws')
  const deaf = await connect(app, '/ws')
  pauseReading(deaf)
  const started = Date.now()
  const report = app.wsManager.gracefulShutdown()
  t.equal(app.wsManager.gracefulShutdown(), report, 'a second call returns the same promise')
  await app.close()
  const took = Date.now() - started
  t.ok(took < 2000, `close took ${took} ms`)
  t.match(await report, { closedCount: 1, terminatedCount: 1, failedCount: 0 })
  t.ok((await report).durationMs >= 150)
  t.equal((await polite.closed).code, 1012)
  deaf.ws.terminate()
  await deaf.closed
  await t.rejects(app.wsManager.broadcast('late'), { code: 'FST_WS_SHUTDOWN' })
  t.throws(() => app.wsManager.register(deaf.ws), { code: 'FST_WS_SHUTDOWN' })
})

test('during shutdown a new upgrade is refused and nothing is registered', async (t) => {
  const app = await buildApp(t, { shutdown: { timeout: 300 } }, app => { app.get('/ws', { websocket: true }, () => {}) })
  const deaf = await connect(app, '/ws')
  pauseReading(deaf)
  const done = app.wsManager.gracefulShutdown()
  t.ok(app.wsManager.draining)
  await t.rejects(connect(app, '/ws'), { message: 'Unexpected server response: 503' })
  t.equal(app.wsManager.getConnectionCount(), 0)
  await done
  deaf.ws.terminate()
})

test('after close no timer, socket or server of the app is left', async (t) => {
  const count = (): Record<string, number> => {
    const counts: Record<string, number> = {}
    for (const r of process.getActiveResourcesInfo()) counts[r] = (counts[r] ?? 0) + 1
    return { Timeout: counts.Timeout ?? 0, TCPSocketWrap: counts.TCPSocketWrap ?? 0, TCPServerWrap: counts.TCPServerWrap ?? 0 }
  }
  await new Promise(resolve => setImmediate(resolve))
  const before = count()
  const app = Fastify()
  await app.register(wsStabilizer, { heartbeat: { interval: 20, timeout: 100 }, shutdown: { timeout: 100 } })
  app.get('/ws', { websocket: true, config: { ws: { rooms: ['r'] } } }, () => {})
  await app.listen({ port: 0, host: '127.0.0.1' })
  const clients = await Promise.all([1, 2, 3].map(() => new Promise<WebSocket>((resolve, reject) => {
    const ws = new WebSocket(urlOf(app, '/ws'))
    ws.once('open', () => resolve(ws))
    ws.once('error', reject)
  })))
  pauseReading({ ws: clients[0] } as TestClient)
  t.ok(count().TCPSocketWrap > before.TCPSocketWrap)
  t.ok(app.wsManager.heartbeat.running)
  await app.close()
  for (const ws of clients) {
    ws.terminate()
    if (ws.readyState !== WebSocket.CLOSED) await new Promise(resolve => ws.once('close', resolve))
  }
  await until(() => count().TCPSocketWrap <= before.TCPSocketWrap, 2000, 'sockets to close')
  const after = count()
  t.notOk(app.wsManager.heartbeat.running)
  for (const kind of ['Timeout', 'TCPSocketWrap', 'TCPServerWrap']) t.ok(after[kind] <= before[kind], `${kind}: ${after[kind]} after, ${before[kind]} before`)
})

test('limits: a route cap at registration time (a race past the pre-upgrade check)', async (t) => {
  const route = { ...defaultRouteSettings(resolveOptions({})), url: '/r', routeMaxConnections: 1, connections: 1 }
  const refusal = checkConnectionLimits({ registry: new Registry(), route, maxConnections: 0, userId: undefined, replacing: undefined })
  t.match(refusal, { reason: 'connection_limit', code: 1013, message: 'route /r is at maxConnections (1)' })
})

test('an upgrade that passed the pre-upgrade check while a shutdown began is refused at registration', async (t) => {
  let release!: () => void
  const gate = new Promise<void>(resolve => { release = resolve })
  let entered!: () => void
  const inIdentify = new Promise<void>(resolve => { entered = resolve })
  const app = await buildInjectedApp(t, { shutdown: { timeout: 200, closeCode: 1001 } }, app => {
    app.get('/ws', { websocket: true, config: { ws: { identify: async () => { entered(); await gate; return undefined } } } }, () => {})
  })
  const pending = inject(app, '/ws')
  await inIdentify
  const shutdown = app.wsManager.gracefulShutdown()
  release()
  const client = await pending
  t.equal((await client.closed).code, 1001)
  t.equal(app.wsManager.getConnectionCount(), 0)
  t.equal(app.wsManager.getStats().connectsTotal, 0)
  await shutdown
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
  const app = await buildInjectedApp(t, {}, app => { app.get('/ws', { websocket: true }, () => {}) })
  const { ws } = await inject(app, '/ws')
  ws.close()
  await new Promise(resolve => ws.once('close', resolve))
  t.same(await awaitClosed([ws], 100), { clean: 1, terminated: 0 })
})
