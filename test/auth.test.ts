import { test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import fastifyJwt from '@fastify/jwt'
import WebSocket from 'ws'
import { Writable } from 'node:stream'
import wsStabilizer, { redactUrl, tokenSafeRequestSerializer, type DisconnectInfo, type Principal, type RouteWsOptions, type WsStabilizerOptions } from '../plugin.ts'
import { Deadlines } from '../lib/deadlines.ts'
import { buildApp, connect, until, urlOf, TestClient } from './helpers.ts'

const TOKENS: Record<string, Principal> = {
  ann: { userId: 'ann', scopes: ['chat', 'read'] },
  bob: { userId: 'bob', scopes: ['read'] }
}

/** A token is `name` or `name:expiresInMs`. */
function lookup (token: string | undefined): Principal | undefined | Promise<Principal> {
  if (token === undefined) return undefined
  if (token === 'slow') return new Promise(resolve => setTimeout(() => resolve(TOKENS.ann), 50))
  if (token === 'silent') throw new Error('')
  if (token === 'nothing') return undefined
  const [name, ttl] = token.split(':')
  if (name === 'forbidden') throw Object.assign(new Error('banned'), { statusCode: 403 })
  if (name === 'broken') throw Object.assign(new Error('database down'), { statusCode: 503 })
  const principal = TOKENS[name]
  if (principal === undefined) throw new Error('unknown token')
  return ttl === undefined ? principal : { ...principal, expiresAt: Date.now() + Number(ttl) }
}

async function app (t: Parameters<typeof buildApp>[0], ws: RouteWsOptions, options: WsStabilizerOptions = {}, logs?: string[]): Promise<FastifyInstance> {
  const stream = new Writable({ write (chunk, _e, cb) { logs?.push(chunk.toString()); cb() } })
  return await buildApp(t, options, server => {
    server.get('/ws', { websocket: true, config: { ws: { authenticate: (_request, token) => lookup(token), ...ws } } }, (_socket, request) => {
      request.wsConnection!.on('message', () => request.wsConnection!.send(`hello ${request.wsConnection!.userId ?? 'anonymous'}`))
    })
  }, logs === undefined ? {} : { logger: { level: 'debug', stream } })
}

/** Opens a raw ws and reports the HTTP status of a refused upgrade, or the open client. */
async function open (url: string, options: WebSocket.ClientOptions = {}, protocols?: string[]): Promise<{ status: number, client?: TestClient }> {
  const ws = new WebSocket(url, protocols, options)
  const client = new TestClient(ws)
  return await new Promise(resolve => {
    ws.once('open', () => resolve({ status: 101, client }))
    ws.once('unexpected-response', (_req, res) => { resolve({ status: res.statusCode ?? 0 }); res.resume(); ws.terminate() })
  })
}

test('tokens from the Authorization header, the bearer subprotocol (echoed) and the query; never in the plugin\'s logs', async (t) => {
  const logs: string[] = []
  const server = await app(t, {}, {}, logs)
  const viaHeader = await open(urlOf(server, '/ws'), { headers: { authorization: 'Bearer ann' } })
  viaHeader.client!.send('hi')
  t.equal(await viaHeader.client!.next(), 'hello ann')
  const viaProtocol = await open(urlOf(server, '/ws'), {}, ['bearer', 'bob'])
  t.equal(viaProtocol.client!.ws.protocol, 'bearer', 'the chosen subprotocol is echoed, as browsers require')
  viaProtocol.client!.send('hi')
  t.equal(await viaProtocol.client!.next(), 'hello bob')
  const viaQuery = await open(urlOf(server, '/ws?access_token=ann:60000'))
  t.equal(viaQuery.status, 101)
  const conn = server.wsManager.getUserConnections('ann').find(c => c.principal?.expiresAt !== undefined)!
  t.match(conn.principal, { userId: 'ann', scopes: ['chat', 'read'] })
  const plugin = logs.filter(line => !line.includes('"incoming request"'))
  t.notOk(plugin.some(line => line.includes('ann:60000')), 'the token is in no line of the plugin')
  for (const c of [viaHeader, viaProtocol, viaQuery]) await c.client!.close()
})

test('reject over HTTP: 401 without or with a bad token, 403 when forbidden or a scope is missing, 5xx passed on', async (t) => {
  const server = await app(t, { auth: { scopes: ['chat'] } })
  t.equal((await open(urlOf(server, '/ws'))).status, 401)
  t.equal((await open(urlOf(server, '/ws?access_token=nobody'))).status, 401)
  t.equal((await open(urlOf(server, '/ws?access_token=ann:-5'))).status, 401, 'expired credentials')
  t.equal((await open(urlOf(server, '/ws?access_token=forbidden'))).status, 403)
  t.equal((await open(urlOf(server, '/ws?access_token=bob'))).status, 403, 'bob lacks the chat scope')
  t.equal((await open(urlOf(server, '/ws?access_token=broken'))).status, 503, 'a server error stays a server error')
  t.equal((await open(urlOf(server, '/ws?access_token=silent'))).status, 401, 'an error without a message')
  t.equal((await open(urlOf(server, '/ws?access_token=nothing'))).status, 401, 'a token that names nobody')
  t.equal((await open(urlOf(server, '/ws?access_token=ann'))).status, 101)
  t.match(server.wsManager.getStats().rejectedTotal, { unauthorized: 5, forbidden: 2 })
})

test('reject by closing: an error frame a browser can read, then 4401 or 4403; nothing registered', async (t) => {
  const server = await app(t, { auth: { reject: 'close', scopes: ['chat'] } })
  const none = await connect(server, '/ws')
  t.match(await none.json(), { type: 'error', code: 'UNAUTHORIZED', message: 'authentication required' })
  t.match(await none.closed, { code: 4401 })
  const bob = await connect(server, '/ws?access_token=bob')
  t.match(await bob.json(), { type: 'error', code: 'FORBIDDEN' })
  t.match(await bob.closed, { code: 4403 })
  t.equal(server.wsManager.getConnectionCount(), 0)
})

test('anonymous clients where allowed', async (t) => {
  const server = await app(t, { auth: { anonymous: true } })
  const anonymous = await connect(server, '/ws')
  anonymous.send('hi')
  t.equal(await anonymous.next(), 'hello anonymous')
  t.equal(server.wsManager.getConnection(server.wsManager.getActiveConnections()[0])!.principal, undefined)
  t.equal((await open(urlOf(server, '/ws?access_token=nobody'))).status, 401, 'bad credentials are still refused')
  await anonymous.close()
})

test('credentials expire while connected (4401) unless refreshed in-band for the same subject', async (t) => {
  const server = await app(t, {})
  const ended: DisconnectInfo[] = []
  server.wsManager.on('disconnect', (_c, info) => ended.push(info))
  const short = await connect(server, '/ws?access_token=ann:80')
  t.match(await short.closed, { code: 4401, reason: 'credentials expired' })

  const refreshed = await connect(server, '/ws?access_token=ann:150')
  refreshed.send('{"type":"auth.refresh","token":"ann:60000"}')
  t.match(await refreshed.json(), { type: 'auth.refreshed' })
  refreshed.send('{"type":"auth.refresh","token":"ann"}')
  t.match(await refreshed.json(), { type: 'auth.refreshed', expiresAt: null }, 'credentials that never expire')
  await new Promise(resolve => setTimeout(resolve, 200))
  refreshed.send('still here')
  t.equal(await refreshed.next(), 'hello ann', 'past the first expiry')

  refreshed.send('{"type":"auth.refresh"')
  t.match(await refreshed.json(), { type: 'error', code: 'INVALID_MESSAGE' })
  refreshed.send('{"type":"auth.refresh","token":"bob"}')
  t.match(await refreshed.closed, { code: 4403, reason: 'refresh for another subject' })

  const bad = await connect(server, '/ws?access_token=ann:60000')
  bad.send('{"type":"auth.refresh","token":"nobody"}')
  t.match(await bad.closed, { code: 4401 })
  const gone = await connect(server, '/ws?access_token=ann:60000')
  gone.send('{"type":"auth.refresh","token":"slow"}')
  await new Promise(resolve => setTimeout(resolve, 10))
  gone.ws.terminate()
  await new Promise(resolve => setTimeout(resolve, 80))
  const failing = await connect(server, '/ws?access_token=ann:60000')
  failing.send('{"type":"auth.refresh","token":"broken"}')
  t.match(await failing.closed, { code: 1011 }, 'a server error during a refresh')
  await until(() => ended.length === 5)
  t.same(ended.map(e => e.disconnectReason), ['token_expired', 'forbidden', 'unauthorized', 'network_error', 'handler_error'], 'a refresh that ends after its client left does nothing')
})

test('with @fastify/jwt registered, `auth` alone verifies JWTs (sub, scope, exp); without it the route answers 500', async (t) => {
  const server = Fastify()
  await server.register(fastifyJwt, { secret: 'jwt-secret-for-tests-0123456789' })
  await server.register(wsStabilizer)
  server.get('/ws', { websocket: true, config: { ws: { auth: { scopes: ['chat'] } } } }, () => {})
  server.get('/admin', { websocket: true, config: { ws: { auth: { scopes: ['admin'] } } } }, () => {})
  t.after(() => server.close())
  await server.listen({ port: 0, host: '127.0.0.1' })
  const token = server.jwt.sign({ sub: 'ann', scope: 'chat read' }, { expiresIn: 60 })
  const ok = await open(urlOf(server, '/ws'), { headers: { authorization: `Bearer ${token}` } })
  t.equal(ok.status, 101)
  const conn = server.wsManager.getUserConnections('ann')[0]
  t.match(conn.principal, { userId: 'ann', scopes: ['chat', 'read'] })
  t.ok(conn.principal!.expiresAt! > Date.now())
  t.equal((await open(urlOf(server, '/admin'), { headers: { authorization: `Bearer ${token}` } })).status, 403)
  t.equal((await open(urlOf(server, `/ws?access_token=${token}x`))).status, 401, 'a tampered token')
  t.equal((await open(urlOf(server, '/ws'))).status, 401)
  await ok.client!.close()

  const bare = Fastify()
  await bare.register(wsStabilizer)
  bare.get('/ws', { websocket: true, config: { ws: { auth: {} } } }, () => {})
  t.after(() => bare.close())
  await bare.listen({ port: 0, host: '127.0.0.1' })
  t.equal((await open(urlOf(bare, '/ws?access_token=x'))).status, 500)
})

test('origin allow-list: other origins get 403, no origin (not a browser) is let in; routes may replace the list', async (t) => {
  const server = await buildApp(t, { allowedOrigins: ['https://app.example'] }, s => {
    s.get('/ws', { websocket: true }, () => {})
    s.get('/open', { websocket: true, config: { ws: { allowedOrigins: ['https://partner.example'] } } }, () => {})
  })
  t.equal((await open(urlOf(server, '/ws'), { origin: 'https://evil.example' })).status, 403)
  const good = await open(urlOf(server, '/ws'), { origin: 'https://app.example' })
  t.equal(good.status, 101)
  const native = await open(urlOf(server, '/ws'))
  t.equal(native.status, 101)
  t.equal((await open(urlOf(server, '/open'), { origin: 'https://app.example' })).status, 403)
  t.equal((await open(urlOf(server, '/open'), { origin: 'https://partner.example' })).status, 101)
  t.equal(server.wsManager.getStats().rejectedTotal.origin, 2)
  await good.client!.close()
  await native.client!.close()
})

test('per-IP cap: HTTP 429 with Retry-After over maxConnectionsPerIp; room again when one leaves', async (t) => {
  const server = await buildApp(t, { limits: { maxConnectionsPerIp: 2 } }, s => { s.get('/ws', { websocket: true }, () => {}) })
  const a = await connect(server, '/ws')
  const b = await connect(server, '/ws')
  t.equal((await open(urlOf(server, '/ws'))).status, 429)
  await a.close()
  await until(() => server.wsManager.getConnectionCount() === 1)
  const c = await open(urlOf(server, '/ws'))
  t.equal(c.status, 101)
  t.equal(server.wsManager.getStats().rejectedTotal.ip_limit, 1)
  await b.close()
  await c.client!.close()
})

test('Deadlines: one timer, earliest first, moved and cancelled deadlines skipped', async (t) => {
  const due: string[] = []
  const deadlines = new Deadlines<string>(item => due.push(item))
  const now = Date.now()
  deadlines.set('c', now + 30)
  deadlines.set('a', now + 10)
  deadlines.set('b', now + 20)
  deadlines.set('d', now + 25)
  deadlines.set('b', now + 40)
  deadlines.delete('d')
  for (let i = 0; i < 6; i++) deadlines.set(`x${i}`, now + 15 + i)
  for (let i = 0; i < 6; i++) deadlines.delete(`x${i}`)
  t.equal(deadlines.size, 3)
  await until(() => due.length === 3)
  t.same(due, ['a', 'c', 'b'])
  deadlines.set('e', now + 5)
  deadlines.delete('e')
  t.equal(deadlines.size, 0)
})

test('JWT claims to a principal; auth options checked when the route is added', async (t) => {
  const { principalFromClaims } = await import('../plugin.ts')
  t.same(principalFromClaims({ sub: 'a', scope: 'x  y', exp: 10 }), { userId: 'a', scopes: ['x', 'y'], claims: { sub: 'a', scope: 'x  y', exp: 10 }, expiresAt: 10_000 })
  t.match(principalFromClaims({ scopes: ['p', 1] }), { userId: undefined, scopes: ['p', '1'], expiresAt: undefined })
  t.match(principalFromClaims({}), { scopes: [] })
  const server = Fastify()
  await server.register(wsStabilizer)
  t.throws(() => server.get('/ws', { websocket: true, config: { ws: { auth: { anonymous: true, scopes: ['a'] } } } }, () => {}), { code: 'FST_WS_INVALID_ROUTE_OPTIONS', message: /scopes or allow anonymous clients, not both/ })
  t.throws(() => server.get('/ws2', { websocket: true, config: { ws: { authenticate: 'yes' as never } } }, () => {}), { message: /config\.ws\.authenticate` to be a function/ })
  await server.close()
})

test('tokens in URLs: with tokenSafeRequestSerializer the app\'s own request logs leave them out too', async (t) => {
  const logs: string[] = []
  const stream = new Writable({ write (chunk, _e, cb) { logs.push(chunk.toString()); cb() } })
  const server = await buildApp(t, {}, server => {
    server.get('/ws', { websocket: true, config: { ws: { authenticate: (_request, token) => lookup(token) } } }, () => {})
  }, { logger: { level: 'info', stream, serializers: { req: tokenSafeRequestSerializer() } } })
  const client = await open(urlOf(server, '/ws?room=a&access_token=ann:60000&x'))
  t.equal(client.status, 101)
  await client.client!.close()
  const incoming = logs.find(line => line.includes('"incoming request"'))!
  t.match(JSON.parse(incoming).req, { method: 'GET', url: '/ws?room=a&access_token=[redacted]&x', remoteAddress: '127.0.0.1' })
  t.notOk(logs.some(line => line.includes('ann:60000')), 'in no line at all')
})

test('redactUrl: only the named parameters, however they are spelled', async (t) => {
  t.equal(redactUrl('/ws'), '/ws')
  t.equal(redactUrl('/ws?resume=tok&offset=4'), '/ws?resume=[redacted]&offset=4')
  t.equal(redactUrl('/ws?access%5Ftoken=tok&access_token'), '/ws?access%5Ftoken=[redacted]&access_token', 'an encoded name; a name without a value has nothing to hide')
  t.equal(redactUrl('/ws?%E0%A4%A=1&key=2', ['key']), '/ws?%E0%A4%A=1&key=[redacted]', 'a name that does not decode is kept as it is')
  t.equal(redactUrl('/ws?my+token=1', ['my token']), '/ws?my+token=[redacted]')
  t.same(tokenSafeRequestSerializer(['t'])({ method: 'GET', url: '/?t=1' }), { method: 'GET', url: '/?t=[redacted]', version: undefined, host: undefined, remoteAddress: undefined, remotePort: undefined })
})
