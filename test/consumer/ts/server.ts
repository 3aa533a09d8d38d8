/*
 * A TypeScript (strict) app as a user writes it, importing only the package: routes with
 * `websocket: true` and `config.ws`, the managed connection, the manager. It is compiled,
 * not run: every line must type-check against the published declarations.
 */
import Fastify, { type FastifyRequest } from 'fastify'
import fastifyJwt from '@fastify/jwt'
import { Type } from '@sinclair/typebox'
import type { RawData, WebSocket } from 'ws'
import { register as promRegistry } from 'prom-client'
import wsStabilizer, {
  CloseCode, ConnectionNotFoundError, NotManagedError, WebSocketStabilizerError, defineMessages, optionsFromEnv, wsConnectionOf,
  type BroadcastResult, type DisconnectInfo, type ManagedConnection, type Principal, type RouteWsOptions, type WsManager
} from 'fastify-websocket-stabilizer'

const app = Fastify({ logger: { level: 'warn' } })
await app.register(fastifyJwt, { secret: 'a-secret-of-at-least-32-characters!!' })
await app.register(wsStabilizer, {
  ...optionsFromEnv(process.env),
  heartbeat: { interval: 25_000, timeout: 60_000, mode: 'message' },
  limits: { maxConnections: 10_000, maxConnectionsPerUser: 5, maxMessageSize: 64 * 1024 },
  reconnect: { secret: 'another-secret-of-32-characters!!', tokenTtl: 60_000, maxDisconnect: 30_000 },
  prometheus: { registry: promRegistry }
})

const manager: WsManager = app.wsManager

// identify, rooms, reconnect; the connection through the accessor, no null check
app.get<{ Params: { room: string }, Querystring: { user?: string } }>('/chat/:room', {
  websocket: true,
  config: {
    ws: {
      identify: (request: FastifyRequest) => ({ userId: (request.query as { user?: string }).user, metadata: { agent: request.headers['user-agent'] } }),
      rooms: ['lobby'],
      reconnect: { replay: true, maxDisconnect: 10_000 },
      heartbeat: { interval: 10_000 },
      limits: { maxMessageSize: 16 * 1024 }
    }
  }
}, (socket, request) => {
  const ws: WebSocket = socket
  const conn: ManagedConnection = wsConnectionOf(request)
  const user: string | undefined = request.query.user
  conn.join(request.params.room)
  conn.log.info({ user, open: ws.readyState }, 'joined')
  conn.on('message', (data: RawData, isBinary: boolean) => {
    if (isBinary) return
    manager.broadcast({ from: conn.userId, text: data.toString() }, { room: request.params.room, exclude: conn.id })
      .then((result: BroadcastResult) => { conn.send({ delivered: result.succeeded }) })
      .catch((err: unknown) => request.log.warn({ err }, 'broadcast failed'))
  })
  conn.on('close', (info: DisconnectInfo) => {
    request.log.info({ code: info.code, reason: info.disconnectReason }, 'left')
  })
})

// request.wsConnection itself stays nullable: it is null on every other request
app.get('/nullable', { websocket: true }, (_socket, request) => {
  const conn: ManagedConnection | null = request.wsConnection
  if (conn !== null) conn.send('hello')
  // @fastify/websocket's own augmentation comes with the package
  const upgrade: boolean = request.ws
  if (upgrade) app.log.debug({ clients: app.websocketServer.clients.size })
  // @ts-expect-error: request.wsConnection may be null, wsConnectionOf(request) is not
  request.wsConnection.send('hello')
})

// auth: an authenticate function, scopes; typed messages validated by TypeBox schemas
const messages = defineMessages({
  chat: {
    schema: Type.Object({ text: Type.String({ maxLength: 500 }) }),
    rateLimit: { messagesPerSecond: 5, burst: 10 },
    handler: (data, { conn, request, id }) => {
      const text: string = data.text
      // @ts-expect-error: data is what the schema says, it has no `html`
      request.log.debug(data.html)
      request.log.debug({ id }, 'chat')
      return conn.send({ type: 'chat', from: conn.userId, text })
    }
  },
  ping: { handler: (data) => ({ pong: data }) }
})

async function authenticate (request: FastifyRequest, token: string | undefined): Promise<Principal | null> {
  if (token === undefined) return null
  const claims = await request.jwtVerify<{ sub: string, scopes?: string[] }>()
  return { userId: claims.sub, scopes: claims.scopes ?? [], expiresAt: Date.now() + 60_000 }
}

const authed: RouteWsOptions = {
  authenticate,
  auth: { scopes: ['chat'], reject: 'close', queryParameter: 'token' },
  messages,
  rateLimit: { messagesPerSecond: 20 },
  backpressure: { highWaterMark: 1024 * 1024, policy: 'drop' },
  allowedOrigins: ['https://example.com']
}
app.get('/secure', { websocket: true, config: { ws: authed } }, (_socket, request) => {
  wsConnectionOf(request).send({ type: 'welcome' })
})

// auth through @fastify/jwt (no authenticate), anonymous allowed
app.get('/jwt', { websocket: true, config: { ws: { auth: { anonymous: true } } } }, async (_socket, request) => {
  const conn = wsConnectionOf(request)
  await manager.cluster.getUserConnectionCount(conn.userId ?? 'anonymous')
})

// an unmanaged WebSocket route: @fastify/websocket alone
app.get('/raw', { websocket: true, config: { ws: false } }, (socket, request) => {
  socket.send('raw')
  try {
    wsConnectionOf(request)
  } catch (err) {
    if (err instanceof NotManagedError) request.log.info({ code: err.code, base: err instanceof WebSocketStabilizerError })
  }
})

app.route({
  method: 'GET',
  url: '/both',
  handler: async () => ({ http: true }),
  wsHandler: (_socket, request) => { wsConnectionOf(request).send('ws') },
  config: { ws: { rooms: ['both'] } }
})

// the types bite: a config.ws field of the wrong type, a wrong plugin option, a wrong argument
// (a misspelt config.ws field is not caught: Fastify infers the route's config type from it)
app.get('/wrong', {
  websocket: true,
  // @ts-expect-error: rooms is a list of names
  config: { ws: { rooms: 'lobby' } }
}, () => {})
// @ts-expect-error: the heartbeat mode is 'ping' or 'message'
await app.register(wsStabilizer, { heartbeat: { mode: 'pong' } })
// @ts-expect-error: the accessor takes the request, not the socket
app.get('/wrong3', { websocket: true }, (socket) => { wsConnectionOf(socket) })

// the manager: send, broadcast, rooms, cluster-wide counts, stats, shutdown
app.get('/stats', async () => {
  const sent: boolean = manager.send('some-client', { type: 'note' }, { volatile: true })
  const toUser: BroadcastResult = manager.sendToUser('ann', Buffer.from('bin'))
  const all: BroadcastResult = await manager.broadcast('to everyone')
  const room: BroadcastResult = await manager.broadcast(new Uint8Array([1, 2]), { room: ['a', 'b'], exclude: ['c'] })
  // @ts-expect-error: exclude takes clientIds
  await manager.broadcast('x', { exclude: 42 })
  const cluster = {
    connections: await manager.cluster.getConnectionCount(),
    users: await manager.cluster.getActiveUsers(),
    userCount: await manager.cluster.getUserCount(),
    online: await manager.cluster.isUserConnected('ann'),
    members: await manager.cluster.getRoomMembers('lobby')
  }
  try {
    manager.join('nobody', 'lobby')
  } catch (err) {
    if (err instanceof ConnectionNotFoundError) app.log.info({ code: err.code })
  }
  for (const conn of manager.connections()) conn.rtt?.toFixed()
  return { sent, toUser, all, room, cluster, stats: manager.getStats(), health: manager.health().status }
})

manager.on('connect', (conn) => { conn.log.debug('connected') })
manager.on('disconnect', (conn, info) => { app.log.debug({ id: conn.id, why: info.disconnectReason }) })
manager.on('error', (err, conn) => { app.log.warn({ err, id: conn?.id }) })
const replaced: 4001 = CloseCode.REPLACED

const token: string = manager.generateReconnectToken('c1')
const claims = await manager.validateReconnectToken(token)
const report = await manager.gracefulShutdown({ timeout: 1000, closeCode: 1001 })
export const summary = { replaced, claims: claims.clientId, closed: report.closedCount }
