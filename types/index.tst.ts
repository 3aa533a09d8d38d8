import { expect, test } from 'tstyche'
import Fastify from 'fastify'
import type { WebSocket } from 'ws'
import wsStabilizer, {
  type BroadcastResult, type DisconnectInfo, type ManagedConnection, type ReconnectClaims, type RouteWsOptions, type ShutdownReport, type WsManager,
  CloseCode, ConnectionNotFoundError, NotManagedError, optionsFromEnv, version, wsConnectionOf
} from '../plugin.ts'

const app = Fastify()

test('register takes typed options', () => {
  expect(app.register(wsStabilizer, { heartbeat: { interval: 1000, mode: 'message' }, limits: { maxConnections: 10 } })).type.not.toRaiseError()
  expect(app.register(wsStabilizer, optionsFromEnv())).type.not.toRaiseError()
  expect(app.register).type.not.toBeCallableWith(wsStabilizer, { heartbeat: { mode: 'pong' } })
  expect(app.register).type.not.toBeCallableWith(wsStabilizer, { compression: 'gzip' })
})

test('decorators', () => {
  expect(app.wsManager).type.toBe<WsManager>()
  app.get('/', async (request) => {
    expect(request.wsConnection).type.toBe<ManagedConnection | null>()
    expect(request.ws).type.toBe<boolean>()
  })
})

test('route config.ws and the websocket handler', () => {
  app.get('/ws', {
    websocket: true,
    config: { ws: { rooms: ['a'], identify: (request) => ({ userId: request.id }), heartbeat: false, limits: { maxMessageSize: 10 } } }
  }, (socket, request) => {
    expect(socket).type.toBe<WebSocket>()
    const conn = request.wsConnection!
    expect(conn.send({ a: 1 })).type.toBe<boolean>()
    expect(conn.rooms).type.toBe<ReadonlySet<string>>()
    conn.on('message', (data, isBinary) => {
      expect(isBinary).type.toBe<boolean>()
      expect(data).type.not.toBeAssignableTo<string>()
    })
    conn.on('close', info => { expect(info).type.toBe<DisconnectInfo>() })
  })
  expect(app.get).type.not.toBeCallableWith('/x', { websocket: true, config: { ws: { rooms: 'a' } } }, () => {})
})

test('wsConnectionOf(request): the managed connection, no null check', () => {
  app.get<{ Params: { room: string }, Querystring: { user: string } }>('/typed/:room', { websocket: true }, (socket, request) => {
    expect(wsConnectionOf(request)).type.toBe<ManagedConnection>()
    expect(request.wsConnection).type.toBe<ManagedConnection | null>()
    expect(wsConnectionOf).type.not.toBeCallableWith(socket)
    expect(wsConnectionOf).type.not.toBeCallableWith(request.wsConnection)
  })
  app.route({ method: 'GET', url: '/both', handler: async (request) => wsConnectionOf(request).id, wsHandler: (_socket, request) => { expect(wsConnectionOf(request)).type.toBe<ManagedConnection>() } })
  expect(new NotManagedError('GET', '/x', 'why').code).type.toBe<'FST_WS_NOT_MANAGED'>()
})

test('manager API', async () => {
  const m = app.wsManager
  expect(await m.broadcast('x', { room: 'a', exclude: ['b'] })).type.toBe<BroadcastResult>()
  expect(m.sendToUser('u', Buffer.from('x'))).type.toBe<BroadcastResult>()
  expect(m.send('c', { a: 1 })).type.toBe<boolean>()
  expect(await m.gracefulShutdown({ timeout: 10 })).type.toBe<ShutdownReport>()
  expect(m.getActiveConnections()).type.toBe<string[]>()
  m.on('disconnect', (conn, info) => {
    expect(conn).type.toBe<ManagedConnection>()
    expect(info.disconnectReason).type.toBeAssignableTo<string>()
  })
  expect(m.on).type.not.toBeCallableWith('nope', () => {})
})

test('exports', () => {
  expect(version).type.toBe<string>()
  expect(CloseCode.REPLACED).type.toBe<4001>()
  expect(new ConnectionNotFoundError('x').code).type.toBe<'FST_WS_CONNECTION_NOT_FOUND'>()
})

test('reconnect: options, route config, tokens, volatile sends', async () => {
  expect(app.register(wsStabilizer, { reconnect: { secret: ['a', 'b'], tokenTtl: 1000, maxDisconnect: 5000, replayMessages: 10 } })).type.not.toRaiseError()
  expect(app.register).type.not.toBeCallableWith(wsStabilizer, { reconnect: { secret: 42 } })
  app.get('/r', { websocket: true, config: { ws: { reconnect: { replay: false, maxDisconnect: 100 } } } }, () => {})
  app.get('/r2', { websocket: true, config: { ws: { reconnect: true } } }, () => {})
  expect({ reconnect: 'yes' as const }).type.not.toBeAssignableTo<RouteWsOptions>()
  expect({ reconnect: { replay: true } }).type.toBeAssignableTo<RouteWsOptions>()
  const m = app.wsManager
  expect(m.generateReconnectToken('c')).type.toBe<string>()
  expect(await m.validateReconnectToken('t')).type.toBe<ReconnectClaims>()
  expect(m.send('c', 'x', { volatile: true })).type.toBe<boolean>()
  expect(await m.broadcast('x', { volatile: true })).type.toBe<BroadcastResult>()
  expect(m.send).type.not.toBeCallableWith('c', 'x', { volatile: 'yes' })
})
