import { test } from 'tap'
import WebSocket from 'ws'
import net, { type AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance, FastifyServerOptions } from 'fastify'
import { buildApp, until, urlOf } from '../helpers.ts'
import { StabilizerClient } from '../../lib/client/index.ts'

/*
 * Defect: a late upgrade that arrived while the drain was busy got Fastify's own 503
 * ("server is closing", return503OnClosing) on @fastify/websocket's made-up response,
 * which nobody ends: its socket stayed and server.close() waited for ever.
 */

type Tap = Parameters<typeof buildApp>[0] & { teardown (fn: () => unknown): void }

const TIMEOUT = 200
const CLOSE_TIMEOUT = 200
const MARGIN = 1000
const UPGRADE = 'GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n'

function portOf (app: FastifyInstance): number {
  return (app.server.address() as AddressInfo).port
}

/** A client that completes the upgrade and then never reads again: it never answers the close frame. */
async function halfOpen (app: FastifyInstance): Promise<net.Socket> {
  const socket = net.connect(portOf(app), '127.0.0.1')
  socket.on('error', () => {})
  socket.write(UPGRADE)
  await new Promise(resolve => socket.once('data', resolve))
  socket.pause()
  return socket
}

function connections (app: FastifyInstance): Promise<number> {
  return new Promise((resolve, reject) => app.server.getConnections((err, n) => err === null ? resolve(n) : reject(err)))
}

/**
 * Closes the app; resolves with how long it took, or undefined when it has not resolved
 * within `bound` ms (then the server's sockets are destroyed, so the test can end).
 */
async function timedClose (app: FastifyInstance, bound: number): Promise<number | undefined> {
  const sockets = new Set<net.Socket>()
  app.server.on('connection', (s: net.Socket) => { sockets.add(s) })
  const started = Date.now()
  const closed = app.close().then(() => Date.now() - started)
  const took = await Promise.race([closed, sleep(bound, undefined)])
  if (took === undefined) for (const s of sockets) s.destroy()
  return took
}

async function appWithHalfOpenClient (t: Tap, serverOptions: FastifyServerOptions = {}, routes: (app: FastifyInstance) => void = () => {}): Promise<{ app: FastifyInstance, stuck: net.Socket }> {
  const app = await buildApp(t, { shutdown: { timeout: TIMEOUT }, closeTimeout: CLOSE_TIMEOUT, heartbeat: { enabled: false } }, app => {
    app.get('/ws', { websocket: true }, () => {})
    routes(app)
  }, serverOptions)
  const stuck = await halfOpen(app)
  await until(() => app.wsManager.getConnectionCount() === 1)
  t.teardown(() => { stuck.destroy() })
  return { app, stuck }
}

/** Waits until the drain has begun (the half-open client got its close frame and sits on it). */
async function draining (app: FastifyInstance): Promise<void> {
  await until(() => app.wsManager.draining, 1000, 'the drain')
}

test('the plugin\'s own client reconnecting after 1012 does not keep fastify.close() waiting', async (t) => {
  const { app } = await appWithHalfOpenClient(t)
  const client = new StabilizerClient(urlOf(app, '/ws'), { WebSocket, protocol: 'plain', random: () => 0.1, reconnect: { initialDelay: 100, maxDelay: 100 }, heartbeat: false })
  t.teardown(() => client.close())
  await client.connect()
  const refusals: number[] = []
  client.on('reconnecting', () => refusals.push(Date.now()))
  const took = await timedClose(app, TIMEOUT + CLOSE_TIMEOUT + MARGIN)
  t.ok(took !== undefined, `close() resolved (in ${String(took)} ms, timeout ${TIMEOUT} + closeTimeout ${CLOSE_TIMEOUT})`)
  t.ok(refusals.length >= 2, 'the client tried again during the drain')
  t.equal(await connections(app), 0, 'no socket is left')
})

test('plain ws clients retrying in a loop, one listening for unexpected-response, and a raw socket that never reads: close() is bounded', async (t) => {
  const { app } = await appWithHalfOpenClient(t)
  const url = urlOf(app, '/ws')
  const loop = { stop: false }
  const statuses: number[] = []
  const kept: net.Socket[] = []
  const rawPorts: number[] = []
  t.teardown(() => { for (const s of kept) s.destroy() })

  async function retryLoop (): Promise<void> {
    while (!loop.stop) {
      const ws = new WebSocket(url)
      await new Promise(resolve => { ws.once('error', resolve); ws.once('close', resolve) })
      await sleep(20)
    }
  }
  function keepsTheSocket (): void {
    const ws = new WebSocket(url)
    ws.on('error', () => {})
    ws.on('unexpected-response', (req, res) => {
      statuses.push(res.statusCode!)
      t.equal(res.headers.connection, 'close')
      kept.push(req.socket!)
      res.resume()
    })
  }
  function neverReads (): void {
    const socket = net.connect(portOf(app), '127.0.0.1')
    socket.on('error', () => {})
    socket.once('connect', () => rawPorts.push(socket.localPort!))
    socket.write(UPGRADE)
    socket.pause()
    kept.push(socket)
  }

  const closing = timedClose(app, TIMEOUT + CLOSE_TIMEOUT + MARGIN)
  await draining(app)
  let drained = false
  app.wsManager.gracefulShutdown().then(() => { drained = true }, () => {})
  // by the client's port: whether the server closed that socket before the drain was over
  const closedEarly = new Map<number, boolean>()
  app.server.on('connection', (s: net.Socket) => {
    const port = s.remotePort!
    s.once('close', () => closedEarly.set(port, !drained))
  })
  neverReads()
  keepsTheSocket()
  neverReads()
  keepsTheSocket()
  const loops = [retryLoop(), retryLoop()]
  const took = await closing
  loop.stop = true
  await Promise.all(loops)
  t.ok(took !== undefined, `close() resolved (in ${String(took)} ms, timeout ${TIMEOUT} + closeTimeout ${CLOSE_TIMEOUT})`)
  t.same(statuses, [503, 503], 'the late upgrades got 503')
  t.same(rawPorts.map(port => closedEarly.get(port)), [true, true], 'the server closed the sockets that never read once they were answered, before the drain was over')
  t.equal(await connections(app), 0, 'no socket is left')
})

test('return503OnClosing: false, a late upgrade held up in an app hook past the drain is destroyed when the drain ends', async (t) => {
  let letGo!: () => void
  const held = new Promise<void>(resolve => { letGo = resolve })
  t.teardown(() => letGo())
  const { app } = await appWithHalfOpenClient(t, { return503OnClosing: false }, app => {
    app.addHook('onRequest', async (request) => { if (request.url === '/ws?slow') await held })
  })
  const closing = timedClose(app, TIMEOUT + CLOSE_TIMEOUT + MARGIN)
  await draining(app)
  const slow = new WebSocket(urlOf(app, '/ws?slow'))
  const slowEnded = new Promise<string>(resolve => {
    slow.once('error', (err) => resolve(err.message))
    slow.once('unexpected-response', (_req, res) => resolve(`HTTP ${String(res.statusCode)}`))
  })
  const refused = new Promise<{ status?: number, retryAfter?: string | string[] }>(resolve => {
    const ws = new WebSocket(urlOf(app, '/ws'))
    ws.on('error', () => {})
    ws.once('unexpected-response', (req, res) => {
      resolve({ status: res.statusCode, retryAfter: res.headers['retry-after'] })
      req.destroy()
    })
  })
  t.same(await refused, { status: 503, retryAfter: '5' }, 'the plugin refuses a late upgrade itself')
  const took = await closing
  t.ok(took !== undefined, `close() resolved (in ${String(took)} ms, timeout ${TIMEOUT} + closeTimeout ${CLOSE_TIMEOUT})`)
  t.equal(await slowEnded, 'socket hang up', 'the held-up upgrade lost its socket')
  t.equal(await connections(app), 0, 'no socket is left')
})
