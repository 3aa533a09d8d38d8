import { test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import fastifyWebsocket from '@fastify/websocket'
import { createServer } from 'node:http'
import wsStabilizer from '../../plugin.ts'
import { wsTesting } from '../../lib/testing/index.ts'

/*
 * Defect: wsTesting(app).connect() through injectWS was refused with HTTP 400 on a fresh
 * install. @fastify/websocket's injectWS (11.3.7) writes `sec-websocket-version` as the number
 * 13; ws 8.23.1 compares the header as the string a real request always carries
 * (ws 8.23.0 converted it with `+`). An injected upgrade must carry what a real one does: the
 * string '13', which both ws versions accept, whichever server @fastify/websocket listens on.
 */

function versionRoute (app: FastifyInstance): void {
  app.get('/version', { websocket: true }, (_socket, request) => {
    const version = request.headers['sec-websocket-version']
    request.wsConnection!.send({ version, type: typeof version })
  })
}

test('an injected upgrade opens and carries Sec-WebSocket-Version as the string a real one does', async t => {
  const app = Fastify()
  await app.register(wsStabilizer)
  versionRoute(app)
  t.after(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const ws = wsTesting(app, { test: t })
  const real = await ws.connect('/version', { transport: 'listen' })
  const expected = await real.json()
  t.same(expected, { version: '13', type: 'string' }, 'a real client sends the string')
  for (const round of [1, 2]) {
    const injected = await ws.connect('/version') // injectWS; the second reuses what the first set up
    t.same(await injected.json(), expected, `injected, round ${round}: the same header`)
  }
  const again = await ws.connect('/version', { transport: 'listen' })
  t.same(await again.json(), expected, 'a real client after injected ones: its header untouched')
})

test('the same when @fastify/websocket listens on its own server', async t => {
  const app = Fastify()
  await app.register(fastifyWebsocket, { options: { server: createServer() } })
  await app.register(wsStabilizer)
  versionRoute(app)
  t.after(() => app.close())
  const ws = wsTesting(app, { test: t })
  const injected = await ws.connect('/version')
  t.same(await injected.json(), { version: '13', type: 'string' })
})
