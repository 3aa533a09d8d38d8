import { test } from 'tap'
import Fastify from 'fastify'
import { Writable } from 'node:stream'
import wsStabilizer, { InvalidTokenError, MemoryNonceStore, TokenExpiredError, WebSocketStabilizerError } from '../plugin.ts'
import { ReconnectTokens } from '../lib/resume/tokens.ts'
import { buildApp, connect } from './helpers.ts'

const SECRET = 'a-secret-of-32-characters-......'
const OTHER = 'another-secret-of-enough-length!'

function tokens (secrets = [SECRET], now = Date.now, ttl = 60_000): { tokens: ReconnectTokens, nonces: MemoryNonceStore } {
  const nonces = new MemoryNonceStore()
  return { tokens: new ReconnectTokens({ secrets, ttl, nonces, now }), nonces }
}

/** Re-encodes a token's payload with one field changed, keeping the old signature. */
function tamper (token: string, change: (payload: Record<string, unknown>) => void): string {
  const [body, signature] = token.split('.')
  const payload = JSON.parse(Buffer.from(body, 'base64url').toString()) as Record<string, unknown>
  change(payload)
  return `${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${signature}`
}

test('a token round-trips its claims once', async (t) => {
  const { tokens: tk, nonces } = tokens()
  t.teardown(() => nonces.close())
  const before = Date.now()
  const token = tk.generate('client-1', 'user-1')
  t.match(token, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/, 'base64url, URL-safe')
  const claims = await tk.validate(token)
  t.equal(claims.clientId, 'client-1')
  t.equal(claims.userId, 'user-1')
  t.ok(claims.issuedAt >= before)
  t.equal(claims.expiresAt - claims.issuedAt, 60_000)
  t.equal(nonces.size, 1)
  await t.rejects(tk.validate(token), { code: 'FST_WS_INVALID_TOKEN', message: /already used/ }, 'single use')
  const anonymous = await tk.validate(tk.generate('client-2'))
  t.equal(anonymous.userId, undefined)
  t.not(tk.generate('c'), tk.generate('c'), 'a fresh nonce every time')
})

test('tampering with any field, or the signature, is rejected', async (t) => {
  const { tokens: tk, nonces } = tokens()
  t.teardown(() => nonces.close())
  const token = tk.generate('client-1', 'user-1')
  const changes: Record<string, (p: Record<string, unknown>) => void> = {
    clientId: p => { p.c = 'client-2' },
    userId: p => { p.u = 'admin' },
    issuedAt: p => { p.iat = (p.iat as number) + 1 },
    expiresAt: p => { p.exp = (p.exp as number) + 3_600_000 },
    nonce: p => { p.n = 'other' },
    version: p => { p.v = 2 }
  }
  for (const [field, change] of Object.entries(changes)) {
    await t.rejects(tk.validate(tamper(token, change)), { code: 'FST_WS_INVALID_TOKEN', message: /bad signature/ }, field)
  }
  const [body, signature] = token.split('.')
  const flipped = signature.slice(0, -2) + (signature.endsWith('AA') ? 'BB' : 'AA')
  await t.rejects(tk.validate(`${body}.${flipped}`), InvalidTokenError)
  await t.rejects(tk.validate(`${body}.`), { message: /bad signature/ })
  for (const bad of ['', 'nodot', '.sig', 'a.b.c', 42, undefined, 'x'.repeat(3000)]) {
    await t.rejects(tk.validate(bad), InvalidTokenError, String(bad).slice(0, 20))
  }
  t.equal(nonces.size, 0, 'no rejected token used up a nonce')
  t.ok(await tk.validate(token), 'the genuine token is still good')
})

test('a well-signed payload of the wrong shape is rejected', async (t) => {
  const { tokens: tk, nonces } = tokens()
  t.teardown(() => nonces.close())
  const { createHmac } = await import('node:crypto')
  const forge = (payload: unknown): string => {
    const body = Buffer.from(typeof payload === 'string' ? payload : JSON.stringify(payload)).toString('base64url')
    return `${body}.${createHmac('sha256', SECRET).update(body).digest('base64url')}`
  }
  const good = { v: 1, c: 'c', iat: Date.now(), exp: Date.now() + 1000, n: 'n1' }
  t.ok(await tk.validate(forge(good)), 'the forger holds the secret: shape is all that is left to check')
  for (const bad of ['not json', null, { ...good, c: '' }, { ...good, u: 5 }, { ...good, exp: 'soon' }, { ...good, n: '' }, { ...good, iat: 1.5 }]) {
    await t.rejects(tk.validate(forge(bad)), { code: 'FST_WS_INVALID_TOKEN', message: /malformed payload/ }, JSON.stringify(bad))
  }
})

test('expiry: an expired token is TokenExpiredError, checked after the signature', async (t) => {
  let now = 1_000_000
  const { tokens: tk, nonces } = tokens([SECRET], () => now, 500)
  t.teardown(() => nonces.close())
  const token = tk.generate('c')
  now += 500
  const err = await tk.validate(token).then(() => undefined, (e: unknown) => e as Error & { code: string })
  t.ok(err instanceof TokenExpiredError)
  t.ok(err instanceof WebSocketStabilizerError)
  t.match(err?.message, /expired at 1970-01-01T00:16:40\.500Z/)
  await t.rejects(tk.validate(tamper(token, p => { p.exp = now + 10_000 })), { code: 'FST_WS_INVALID_TOKEN' }, 'extending it breaks the signature')
})

test('rotation: the first secret signs, every secret verifies; an unknown secret does not', async (t) => {
  const old = tokens([OTHER])
  const rotated = tokens([SECRET, OTHER])
  const stranger = tokens(['a-third-secret-nobody-configured'])
  t.teardown(() => { old.nonces.close(); rotated.nonces.close(); stranger.nonces.close() })
  t.ok(await rotated.tokens.validate(old.tokens.generate('c')), 'a token signed with the old secret still verifies')
  const fresh = rotated.tokens.generate('c')
  await t.rejects(old.tokens.validate(fresh), { message: /bad signature/ }, 'new tokens are signed with the new secret')
  await t.rejects(stranger.tokens.validate(rotated.tokens.generate('c')), { code: 'FST_WS_INVALID_TOKEN' }, 'wrong secret')
})

test('used nonces are kept only until their token would have expired', async (t) => {
  const nonces = new MemoryNonceStore(10)
  t.teardown(() => nonces.close())
  t.equal(nonces.claim('a', Date.now() + 20), true)
  t.equal(nonces.claim('b', Date.now() + 60_000), true)
  t.equal(nonces.claim('a', Date.now() + 20), false)
  await new Promise(resolve => setTimeout(resolve, 60))
  t.equal(nonces.size, 1, 'the background sweep removed the expired one')
  nonces.sweep(Date.now() + 120_000)
  t.equal(nonces.size, 0)
})

test('a released nonce and its partner: either is claimed once and spends the other; pairs expire with their tokens', async (t) => {
  const nonces = new MemoryNonceStore()
  t.teardown(() => nonces.close())
  const later = Date.now() + 60_000
  t.equal(nonces.claim('used', later), true)
  nonces.release({ nonce: 'used', expiresAt: later }, { nonce: 'next', expiresAt: later })
  t.equal(nonces.claim('used', later), true, 'given back')
  t.equal(nonces.claim('next', later), false, 'spent with it')

  t.equal(nonces.claim('old', later), true)
  nonces.release({ nonce: 'old', expiresAt: later }, { nonce: 'new', expiresAt: later })
  t.equal(nonces.claim('new', later), true)
  t.equal(nonces.claim('old', later), false)

  // the partner was used before the release (a resume with it elsewhere while the first connection was half-open)
  t.equal(nonces.claim('first', later), true)
  t.equal(nonces.claim('second', later), true)
  nonces.release({ nonce: 'first', expiresAt: later }, { nonce: 'second', expiresAt: later })
  t.equal(nonces.claim('first', later), false, 'its partner was spent already, so it is too')

  t.equal(nonces.claim('x', later), true)
  nonces.release({ nonce: 'x', expiresAt: Date.now() + 10 }, { nonce: 'y', expiresAt: Date.now() + 10 })
  nonces.sweep(Date.now() + 1000)
  t.equal(nonces.claim('y', later), true, 'an expired pair is forgotten: y is a nonce like any other')
  t.equal(nonces.claim('x', later), true, 'and x was given back')
})

test('the manager: generate and validate, userId of the live connection, single use, options', async (t) => {
  const app = await buildApp(t, { reconnect: { secret: [SECRET, OTHER], tokenTtl: 1000 } }, app => {
    app.get('/ws', { websocket: true, config: { ws: { identify: () => ({ clientId: 'me', userId: 'u1' }) } } }, () => {})
  })
  const client = await connect(app, '/ws')
  const token = app.wsManager.generateReconnectToken('me')
  const claims = await app.wsManager.validateReconnectToken(token)
  t.match(claims, { clientId: 'me', userId: 'u1' })
  t.equal(claims.expiresAt - claims.issuedAt, 1000)
  await t.rejects(app.wsManager.validateReconnectToken(token), { code: 'FST_WS_INVALID_TOKEN' })
  t.equal((await app.wsManager.validateReconnectToken(app.wsManager.generateReconnectToken('gone'))).userId, undefined)
  await client.close()
})

test('options: a short secret is refused; without a secret the first token logs a warning, once', async (t) => {
  const app = Fastify()
  await t.rejects(async () => { await app.register(wsStabilizer, { reconnect: { secret: 'short' } }) }, { code: 'FST_WS_INVALID_OPTIONS', message: /`reconnect\.secret` to be a string of at least 16 characters/ })
  await app.close()
  const lines: Array<{ msg: string }> = []
  const stream = new Writable({ write (chunk, _e, cb) { lines.push(JSON.parse(chunk.toString())); cb() } })
  const quiet = Fastify({ logger: { level: 'trace', stream } })
  await quiet.register(wsStabilizer)
  await quiet.ready()
  t.notOk(lines.some(l => /secret/.test(l.msg)), 'no warning for an app that never uses tokens')
  const issued = [quiet.wsManager.generateReconnectToken('x'), quiet.wsManager.generateReconnectToken('y')]
  t.ok(await quiet.wsManager.validateReconnectToken(issued[0]))
  await t.rejects(quiet.wsManager.validateReconnectToken(issued[0]))
  t.equal(lines.filter(l => /random per-process secret/.test(l.msg)).length, 1)
  const logged = JSON.stringify(lines)
  for (const token of issued) {
    t.notOk(logged.includes(token.split('.')[0]) || logged.includes(token.split('.')[1]), 'no part of a token in the logs')
  }
  await quiet.close()
})

test('one secret as a plain string; a token from another app with the same secret is accepted (restart, another instance)', async (t) => {
  const first = Fastify()
  const second = Fastify()
  await first.register(wsStabilizer, { reconnect: { secret: SECRET } })
  await second.register(wsStabilizer, { reconnect: { secret: SECRET } })
  await first.ready()
  await second.ready()
  const token = first.wsManager.generateReconnectToken('c')
  t.equal((await second.wsManager.validateReconnectToken(token)).clientId, 'c')
  await first.close()
  await second.close()
})
