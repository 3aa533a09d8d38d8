import { test } from 'tap'
import Fastify from 'fastify'
import wsStabilizer, { NotManagedError, WebSocketStabilizerError, wsConnectionOf, type ManagedConnection } from '../plugin.ts'
import { wsTesting } from '../lib/testing/index.ts'

/* wsConnectionOf(request): the managed connection without a null check, or a clear error where there is none. */

async function build (t: { after (fn: () => unknown): void }) {
  const app = Fastify()
  await app.register(wsStabilizer, { heartbeat: { enabled: false }, limits: { maxConnectionsPerUser: 1 } })
  t.after(() => app.close())
  return app
}

function described (fn: () => unknown): string {
  try {
    fn()
    return 'no error'
  } catch (err) {
    const e = err as Error & { code: string }
    return `${e instanceof NotManagedError && e instanceof WebSocketStabilizerError} ${e.code} ${e.message}`
  }
}

test('on a managed route it is request.wsConnection, a refused connection too', async (t) => {
  const app = await build(t)
  const seen: Array<[ManagedConnection, ManagedConnection | null]> = []
  app.get('/ws', { websocket: true, config: { ws: { identify: () => ({ userId: 'ann' }) } } }, (socket, request) => {
    seen.push([wsConnectionOf(request), request.wsConnection])
    if (request.wsConnection?.isOpen === true) socket.send('open')
  })
  const ws = wsTesting(app, { test: t })
  const first = await ws.connect('/ws')
  t.equal(await first.text(), 'open')
  const second = await ws.connect('/ws')
  await second.expectClose(4409)
  t.equal(seen.length, 2)
  for (const [conn, raw] of seen) t.equal(conn, raw)
  t.equal(seen[0]?.[0].isOpen, true)
  t.equal(seen[1]?.[0].isOpen, false, 'the connection refused over the per-user limit, closed')
})

test('on an unmanaged WebSocket route and on an HTTP request it throws FST_WS_NOT_MANAGED, the URL redacted', async (t) => {
  const app = await build(t)
  app.get('/raw', { websocket: true, config: { ws: false } }, (socket, request) => {
    socket.send(described(() => wsConnectionOf(request)))
  })
  app.get('/http', async (request) => described(() => wsConnectionOf(request)))
  const ws = wsTesting(app, { test: t })
  const raw = await ws.connect('/raw?access_token=secret')
  t.equal(await raw.text(), 'true FST_WS_NOT_MANAGED Expected a WebSocket request on a route the plugin manages, got GET /raw?access_token=[redacted]: its route is not managed (`config.ws: false`, or added before the plugin was registered)')
  const http = await app.inject('/http?resume=secret')
  t.equal(http.body, 'true FST_WS_NOT_MANAGED Expected a WebSocket request on a route the plugin manages, got GET /http?resume=[redacted]: not a WebSocket request')
})
