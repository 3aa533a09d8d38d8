import { test } from 'tap'
import Fastify from 'fastify'
import fastifyWebsocket from '@fastify/websocket'
import { Writable } from 'node:stream'
import { readFileSync } from 'node:fs'
import wsStabilizer, {
  CloseCode, InvalidOptionsError, WebSocketStabilizerError, optionsFromEnv, reconnectAdvice, resolveOptions, version
} from '../plugin.ts'
import * as errors from '../lib/errors.ts'
import { buildApp, connect } from './helpers.ts'

async function registerError (options: unknown): Promise<Error & { code?: string }> {
  const app = Fastify()
  try {
    await app.register(wsStabilizer, options as object)
    await app.ready()
  } catch (err) {
    return err as Error
  } finally {
    await app.close()
  }
  throw new Error('register did not fail')
}

test('defaults follow the seeds', async (t) => {
  const o = resolveOptions({})
  t.same(o.heartbeat, { enabled: true, interval: 30_000, timeout: 60_000, mode: 'ping' })
  t.same(o.limits, { maxConnections: 0, maxConnectionsPerUser: 0, maxConnectionsPerIp: 0, maxMessageSize: 1_048_576, maxQueuedMessages: 100, maxQueuedBytes: 1_048_576 })
  t.same(o.backpressure, { highWaterMark: 1_048_576, maxBytes: 8_388_608, maxDeflateBytes: 67_108_864, grace: 5000, policy: 'close' })
  t.same(o.rateLimit, { messagesPerSecond: 0, bytesPerSecond: 0, maxViolations: 10, window: 60_000 })
  t.equal(o.allowedOrigins, undefined)
  t.equal(o.compression, 'none')
  t.equal(o.metrics, false)
  t.equal(o.closeTimeout, 3000)
  t.same(o.shutdown, { timeout: 5000, closeCode: 1012, closeReason: 'server shutting down', batchSize: 0, batchInterval: 250 })
  t.equal(o.logLevel, undefined)
})

test('a bad option throws FST_WS_INVALID_OPTIONS naming the field, the expectation and the value', async (t) => {
  const cases: Array<[unknown, RegExp]> = [
    [{ heartbeat: { interval: 0 } }, /Expected `heartbeat\.interval` to be a positive integer number of milliseconds, got `0`/],
    [{ heartbeat: { mode: 'pong' } }, /`heartbeat\.mode` to be `ping` .* got `"pong"`/],
    [{ heartbeat: { interval: 1000, timeout: 1000 } }, /`heartbeat\.timeout` to be greater than `heartbeat\.interval` \(1000\), got `1000`/],
    [{ limits: { maxMessageSize: -1 } }, /`limits\.maxMessageSize` to be a positive integer number of bytes, got `-1`/],
    [{ limits: { maxConnections: 1.5 } }, /`limits\.maxConnections` to be a non-negative integer \(0 = unlimited\), got `1\.5`/],
    [{ compression: 'gzip' }, /`compression` to be `none` or `deflate`, got `"gzip"`/],
    [{ shutdown: { closeCode: 1000 } }, /`shutdown\.closeCode` to be 1001 or 1012, got `1000`/],
    [{ shutdown: { batchSize: -1 } }, /`shutdown\.batchSize` to be a non-negative integer \(0: all at once\), got `-1`/],
    [{ shutdown: { batchInterval: 0 } }, /`shutdown\.batchInterval` to be a positive integer number of milliseconds, got `0`/],
    [{ logLevel: 'loud' }, /`logLevel` to be one of fatal.*got `"loud"`/],
    [{ metrics: 'yes' }, /`metrics` to be a boolean, got `"yes"`/],
    [{ heartbeat: 5 }, /`heartbeat` to be an object, got `5`/],
    [{ colour: 'blue' }, /Unknown option `colour`/],
    [{ heartbeat: { intervall: 5 } }, /Unknown option `heartbeat\.intervall`/],
    [{ identify: 'me' }, /Expected `identify` to be a function, got `"me"`/],
    [{ adapter: {} }, /Expected `adapter` to be an adapter object/],
    [{ backpressure: { policy: 'skip' } }, /`backpressure\.policy` to be `close` or `drop`, got `"skip"`/],
    [{ rateLimit: { messagesPerSecond: -1 } }, /`rateLimit\.messagesPerSecond` to be a non-negative number \(0 = unlimited\), got `-1`/],
    [{ allowedOrigins: 'https://a.example' }, /`allowedOrigins` to be an array of origins/],
    [{ limits: { maxConnectionsPerIp: -2 } }, /`limits\.maxConnectionsPerIp` to be a non-negative integer/]
  ]
  for (const [options, message] of cases) {
    const err = await registerError(options)
    t.equal(err.code, 'FST_WS_INVALID_OPTIONS', JSON.stringify(options))
    t.ok(err instanceof InvalidOptionsError)
    t.ok(err instanceof WebSocketStabilizerError)
    t.match(err.message, message)
  }
})

test('Fastify register options (prefix) are not taken for ours', async (t) => {
  const app = Fastify()
  await app.register(wsStabilizer, { prefix: '/x' } as object)
  await app.ready()
  t.ok(app.wsManager)
  await app.close()
})

test('a bad config.ws throws FST_WS_INVALID_ROUTE_OPTIONS naming the route and the field', async (t) => {
  const cases: Array<[unknown, RegExp]> = [
    [{ rooms: 'lobby' }, /route \/ws: Expected `config\.ws\.rooms` to be an array of non-empty strings/],
    [{ limits: { maxMessageSize: 0 } }, /`config\.ws\.limits\.maxMessageSize` to be a positive integer/],
    [{ heartbeat: { interval: 100, timeout: 50 } }, /`config\.ws\.heartbeat\.timeout` to be greater than the interval \(100\), got `50`/],
    [{ identify: 42 }, /`config\.ws\.identify` to be a function, got `42`/],
    [{ room: ['a'] }, /Unknown option `config\.ws\.room`/],
    ['yes', /`config\.ws` to be an object or false/]
  ]
  for (const [ws, message] of cases) {
    const app = Fastify()
    await app.register(wsStabilizer)
    t.throws(() => app.get('/ws', { websocket: true, config: { ws: ws as false } }, () => {}), { code: 'FST_WS_INVALID_ROUTE_OPTIONS', message }, JSON.stringify(ws))
    await app.close()
  }
})

test('registering twice is a clear error', async (t) => {
  const app = Fastify()
  await app.register(wsStabilizer)
  app.register(wsStabilizer)
  await t.rejects(async () => { await app.ready() }, { code: 'FST_WS_ALREADY_REGISTERED' })
  await app.close()
})

test('decorators: wsManager, request.wsConnection, and request.ws stays @fastify/websocket\'s flag', async (t) => {
  let seen: { ws: boolean, managed: boolean } | undefined
  const app = await buildApp(t, {}, app => {
    app.get('/http', async (request) => ({ ws: request.ws, conn: request.wsConnection }))
    app.get('/ws', { websocket: true }, (_socket, request) => {
      seen = { ws: request.ws, managed: request.wsConnection !== null && app.wsManager.getConnection(request.wsConnection.id) === request.wsConnection }
    })
  })
  t.same((await app.inject('/http')).json(), { ws: false, conn: null })
  const client = await connect(app, '/ws')
  t.same(seen, { ws: true, managed: true })
  t.equal((await app.inject('/ws')).statusCode, 404, 'a plain GET of a websocket route')
  t.equal((await app.inject({ method: 'HEAD', url: '/ws' })).statusCode, 404)
  await client.close()
})

test('registers @fastify/websocket with our ws options; a route may raise maxPayload', async (t) => {
  const app = Fastify()
  await app.register(wsStabilizer, { limits: { maxMessageSize: 1000 }, closeTimeout: 1234, compression: 'deflate' })
  app.get('/big', { websocket: true, config: { ws: { limits: { maxMessageSize: 5000 } } } }, () => {})
  await app.ready()
  const options = app.websocketServer.options as { maxPayload: number, closeTimeout: number, perMessageDeflate: unknown }
  t.equal(options.maxPayload, 5000)
  t.equal(options.closeTimeout, 1234)
  t.match(options.perMessageDeflate, { threshold: 1024 })
  await app.close()
})

test('works with an app that registered @fastify/websocket itself, and warns about its ws options', async (t) => {
  const lines: Array<{ msg: string }> = []
  const stream = new Writable({ write (chunk, _enc, cb) { lines.push(JSON.parse(chunk.toString())); cb() } })
  const app = Fastify({ logger: { level: 'warn', stream } })
  await app.register(fastifyWebsocket)
  await app.register(wsStabilizer)
  app.get('/ws', { websocket: true, config: { ws: { rooms: ['r'] } } }, () => {})
  t.after(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.ok(lines.some(l => /registered by the app/.test(l.msg)))
  const client = await connect(app, '/ws')
  t.equal(app.wsManager.getConnectionCount(), 1)
  t.same(app.wsManager.getRooms(), ['r'])
  await client.close()
})

test('unmanaged routes: config.ws false or managed false', async (t) => {
  const seen: unknown[] = []
  const app = await buildApp(t, {}, app => {
    app.get('/a', { websocket: true, config: { ws: false } }, (socket, request) => {
      seen.push(request.wsConnection)
      socket.on('message', d => socket.send(d.toString()))
    })
    app.get('/b', { websocket: true, config: { ws: { managed: false } } }, (_s, request) => { seen.push(request.wsConnection) })
  })
  const a = await connect(app, '/a')
  const b = await connect(app, '/b')
  a.send('echo')
  t.equal(await a.next(), 'echo')
  t.same(seen, [null, null])
  t.equal(app.wsManager.getConnectionCount(), 0)
  await a.close()
  await b.close()
})

test('optionsFromEnv reads WS_* variables, explicit options win field by field', async (t) => {
  const env = {
    WS_HEARTBEAT_ENABLED: 'false',
    WS_HEARTBEAT_INTERVAL: '1000',
    WS_HEARTBEAT_TIMEOUT: '3000',
    WS_HEARTBEAT_MODE: 'message',
    WS_MAX_CONNECTIONS: '10',
    WS_MAX_CONNECTIONS_PER_USER: '2',
    WS_MAX_MESSAGE_SIZE: '2048',
    WS_SHUTDOWN_TIMEOUT: '100',
    WS_SHUTDOWN_CLOSE_CODE: '1001',
    WS_SHUTDOWN_BATCH_SIZE: '0',
    WS_SHUTDOWN_BATCH_INTERVAL: '100',
    WS_CLOSE_TIMEOUT: '500',
    WS_COMPRESSION: 'deflate',
    WS_METRICS: '1',
    WS_LOG_LEVEL: 'warn',
    OTHER: 'ignored',
    WS_MAX_QUEUE: ''
  }
  const options = optionsFromEnv(env, { heartbeat: { interval: 2000 }, compression: 'none' })
  t.same(options, {
    heartbeat: { enabled: false, interval: 2000, timeout: 3000, mode: 'message' },
    limits: { maxConnections: 10, maxConnectionsPerUser: 2, maxMessageSize: 2048 },
    shutdown: { timeout: 100, closeCode: 1001, batchSize: 0, batchInterval: 100 },
    closeTimeout: 500,
    compression: 'none',
    metrics: true,
    logLevel: 'warn'
  })
  const resolved = resolveOptions(options)
  t.equal(resolved.limits.maxQueuedMessages, 100)
  t.same(optionsFromEnv({ WS_METRICS: 'off' }), { metrics: false })
  t.same(optionsFromEnv({}), {})
  t.throws(() => optionsFromEnv({ WS_MAX_CONNECTIONS: 'ten' }), { code: 'FST_WS_INVALID_OPTIONS', message: /WS_MAX_CONNECTIONS to be a non-negative integer, got `ten`/ })
  t.throws(() => optionsFromEnv({ WS_METRICS: 'maybe' }), { code: 'FST_WS_INVALID_OPTIONS', message: /WS_METRICS to be true or false/ })
  t.throws(() => resolveOptions(optionsFromEnv({ WS_HEARTBEAT_MODE: 'loud' })), { message: /heartbeat\.mode/ })
})

test('the heartbeat interval warning about proxies is logged at ready', async (t) => {
  const lines: Array<{ msg: string }> = []
  const stream = new Writable({ write (chunk, _enc, cb) { lines.push(JSON.parse(chunk.toString())); cb() } })
  const app = Fastify({ logger: { level: 'info', stream } })
  await app.register(wsStabilizer, { heartbeat: { interval: 55_000, timeout: 120_000 } })
  await app.ready()
  t.ok(lines.some(l => /proxy_read_timeout/.test(l.msg)))
  await app.close()
})

test('version matches package.json; every error is FST_WS_* and a WebSocketStabilizerError', async (t) => {
  t.equal(version, JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version)
  for (const [name, Ctor] of Object.entries(errors)) {
    const err = new (Ctor as new (...a: unknown[]) => Error & { code: string })('a', 1)
    t.match(err.code, /^FST_WS_/, name)
    t.ok(err instanceof WebSocketStabilizerError, name)
  }
})

test('close codes and reconnect advice', async (t) => {
  for (const code of [1001, 1006, 1011, 1012]) t.equal(reconnectAdvice(code), 'reconnect', String(code))
  t.equal(reconnectAdvice(CloseCode.TRY_AGAIN_LATER), 'backoff')
  for (const code of [1000, 1008, 1009, CloseCode.REPLACED, CloseCode.TOO_MANY_CONNECTIONS]) t.equal(reconnectAdvice(code), 'stop', String(code))
})

test('validation never changes the object the app passed', async (t) => {
  const options = { heartbeat: { interval: 1000 }, limits: {} }
  const resolved = resolveOptions(options)
  t.same(options, { heartbeat: { interval: 1000 }, limits: {} })
  t.equal(resolved.heartbeat.timeout, 60_000)
})

test('option values that JSON cannot show are still named', async (t) => {
  t.throws(() => resolveOptions({ heartbeat: { interval: 10n as unknown as number } }), { message: /got `10`/ })
})

test('options: a function where a value belongs, and a non-object', async (t) => {
  t.throws(() => resolveOptions({ metrics: (() => 1) as unknown as boolean }), { message: /`metrics` to be a boolean, got `a function`/ })
  t.throws(() => resolveOptions([] as unknown as object), { message: /Expected `options` to be an object, got `\[\]`/ })
  t.throws(() => resolveOptions(5 as unknown as object), { message: /Expected `options` to be an object, got `5`/ })
  t.equal(resolveOptions(undefined).heartbeat.interval, 30_000)
  t.throws(() => resolveOptions({ compression: Symbol('zip') as unknown as 'none' }), { message: /`compression` to be `none` or `deflate`, got `Symbol\(zip\)`/ })
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
