import { test } from 'tap'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import Fastify, { type FastifyRequest } from 'fastify'
import fastifyWebsocket from '@fastify/websocket'
import type { WebSocket } from 'ws'
import wsStabilizer from '../plugin.ts'
import { releaseUpgradeListener } from '../lib/upgrade.ts'
import { buildApp, TestClient, urlOf } from './helpers.ts'

/*
 * What an idle connection keeps (issue 13): nothing of its upgrade that it does not need
 * (once the handler ran, the Fastify request, its raw request and the reply can be
 * collected), and objects it may never use made on first use.
 */

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

async function collected (ref: WeakRef<object>): Promise<boolean> {
  for (let i = 0; i < 5 && ref.deref() !== undefined; i++) {
    // a WeakRef keeps its target until the current job ends
    await new Promise(resolve => setImmediate(resolve))
    gc()
  }
  return ref.deref() === undefined
}

interface Seen { request: WeakRef<FastifyRequest>, raw: WeakRef<object>, errorListeners: number }

function watch (seen: Seen[]) {
  return (socket: WebSocket, request: FastifyRequest): void => {
    seen.push({ request: new WeakRef(request), raw: new WeakRef(request.raw), errorListeners: socket.listeners('error').length })
    socket.send('hi')
  }
}

test('a websocket: true route: the request and its raw request are collected while the connection stays open', async (t) => {
  const seen: Seen[] = []
  const app = await buildApp(t, { heartbeat: { enabled: false } }, app => {
    app.get('/ws', { websocket: true }, watch(seen))
  })
  const client = await TestClient.open(urlOf(app, '/ws'))
  t.equal(await client.next(), 'hi')
  t.equal(seen[0].errorListeners, 1, "only the connection's own error listener is left")
  t.ok(await collected(seen[0].request), 'the Fastify request is collected')
  t.ok(await collected(seen[0].raw), 'the raw request is collected')
  t.equal(app.wsManager.getConnectionCount(), 1)
  client.ws.close()
})

test('a wsHandler route: the same', async (t) => {
  const seen: Seen[] = []
  const app = await buildApp(t, { heartbeat: { enabled: false } }, app => {
    app.route({ method: 'GET', url: '/ws', handler: (_request, reply) => reply.send('http'), wsHandler: watch(seen) })
  })
  const client = await TestClient.open(urlOf(app, '/ws'))
  t.equal(await client.next(), 'hi')
  t.equal(seen[0].errorListeners, 1)
  t.ok(await collected(seen[0].request))
  t.equal(app.wsManager.getConnectionCount(), 1)
  client.ws.close()
})

test('a route with a message router keeps the request: its handlers get it', async (t) => {
  const seen: Seen[] = []
  const app = await buildApp(t, { heartbeat: { enabled: false } }, app => {
    app.get('/ws', { websocket: true, config: { ws: { messages: { echo: { handler: (data) => data } } } } }, watch(seen))
  })
  const client = await TestClient.open(urlOf(app, '/ws'))
  t.equal(await client.next(), 'hi')
  t.notOk(await collected(seen[0].request), 'the connection holds it')
  client.ws.close()
})

test('@fastify/websocket registered by the app: its error listener (the app may have given its own errorHandler) stays', async (t) => {
  const app = Fastify()
  t.after(() => app.close())
  await app.register(fastifyWebsocket)
  await app.register(wsStabilizer, { heartbeat: { enabled: false } })
  const seen: Seen[] = []
  app.get('/ws', { websocket: true }, watch(seen))
  await app.listen({ port: 0, host: '127.0.0.1' })
  const client = await TestClient.open(urlOf(app, '/ws'))
  t.equal(await client.next(), 'hi')
  t.equal(seen[0].errorListeners, 2)
  client.ws.close()
})

test('metadata: an object of its own, made on first read when identify gave none, and assignable', async (t) => {
  const app = await buildApp(t, { heartbeat: { enabled: false } }, app => {
    app.get('/ws', { websocket: true }, socket => { socket.send('hi') })
  })
  const clients = [await TestClient.open(urlOf(app, '/ws')), await TestClient.open(urlOf(app, '/ws'))]
  for (const client of clients) t.equal(await client.next(), 'hi')
  const [first, second] = [...app.wsManager.connections()]
  t.same(first.metadata, {})
  first.metadata.seen = true
  t.same(first.metadata, { seen: true })
  t.same(second.metadata, {}, 'not shared')
  second.metadata = { n: 2 }
  t.same(second.metadata, { n: 2 })
  for (const client of clients) client.ws.close()
})

test('the release never takes the connection\'s own error listener, should @fastify/websocket add none of its own', async (t) => {
  let socket: WebSocket | undefined
  const app = await buildApp(t, { heartbeat: { enabled: false } }, app => {
    app.get('/ws', { websocket: true, config: { ws: false } }, (s) => { socket = s })
  })
  const client = await TestClient.open(urlOf(app, '/ws'))
  t.teardown(() => client.ws.close())
  await new Promise(resolve => setImmediate(resolve))
  // an unmanaged route's socket, registered by hand: its last error listener is the plugin's own
  for (const listener of socket!.listeners('error')) socket!.off('error', listener as () => void)
  app.wsManager.register(socket!, { clientId: 'by-hand' })
  const before = socket!.listenerCount('error')
  let ran = 0
  const wrapped = releaseUpgradeListener(function (_socket: WebSocket, _request: FastifyRequest) { ran++ })
  wrapped.call(app, socket!, {} as FastifyRequest)
  t.equal(ran, 1, 'the handler ran')
  t.equal(before, 1)
  t.equal(socket!.listenerCount('error'), 1, 'the connection keeps its own error listener')
})
