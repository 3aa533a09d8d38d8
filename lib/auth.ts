import type { FastifyRequest } from 'fastify'
import { InvalidRouteOptionsError, WebSocketStabilizerError } from './errors.ts'

/*
 * Authentication at the upgrade. A route's `authenticate(request, token)` returns the
 * principal (or null/undefined for none) or throws to refuse; without one, a route with
 * `auth` uses @fastify/jwt when the app registered it. The token is looked for in
 * `Authorization: Bearer`, then in the `Sec-WebSocket-Protocol` pair `bearer, <token>`
 * (ws echoes the first, `bearer`, as the chosen subprotocol, as browsers require), then in
 * the `access_token` query parameter. The plugin never logs it.
 */

export interface Principal {
  userId?: string
  scopes?: string[]
  claims?: Record<string, unknown>
  /** When the credentials expire (ms since the epoch): the connection is closed then (4401) unless refreshed. */
  expiresAt?: number
}

export type AuthenticateFn = (request: FastifyRequest, token: string | undefined) => Principal | null | undefined | Promise<Principal | null | undefined>

export interface RouteAuthOptions {
  authenticate: AuthenticateFn
  /** Scopes the principal must all have (403 / 4403 otherwise). */
  scopes?: string[]
  /** Let clients in without credentials, as anonymous. */
  anonymous?: boolean
  /** `http`: 401/403 before the upgrade (a browser sees only 1006). `close`: accept, error frame, close 4401/4403. */
  reject?: 'http' | 'close'
  queryParameter?: string
}

export interface AuthSettings {
  authenticate: AuthenticateFn
  scopes: readonly string[]
  anonymous: boolean
  reject: 'http' | 'close'
  queryParameter: string
}

/** Why a client was refused: 401 (no or bad credentials) or 403 (not allowed). */
export interface AuthFailure {
  status: 401 | 403
  message: string
}

export function resolveAuth (url: string, authenticate: AuthenticateFn | undefined, auth: Omit<RouteAuthOptions, 'authenticate'> | undefined): AuthSettings | undefined {
  if (authenticate === undefined && auth === undefined) return undefined
  if (auth?.anonymous === true && (auth.scopes?.length ?? 0) > 0) throw new InvalidRouteOptionsError(url, 'Expected `config.ws.auth` to require scopes or allow anonymous clients, not both')
  return {
    authenticate: authenticate ?? jwtAuthenticate,
    scopes: auth?.scopes ?? [],
    anonymous: auth?.anonymous ?? false,
    reject: auth?.reject ?? 'http',
    queryParameter: auth?.queryParameter ?? 'access_token'
  }
}

/** The token of a request: Authorization header, then the subprotocol pair, then the query. */
export function findToken (request: FastifyRequest, queryParameter: string): string | undefined {
  const header = request.headers.authorization
  if (header !== undefined && /^bearer /i.test(header)) return header.slice(7).trim()
  const protocols = request.headers['sec-websocket-protocol']
  if (protocols !== undefined) {
    const list = protocols.split(',').map(p => p.trim())
    if (list[0].toLowerCase() === 'bearer' && list.length > 1) return list[1]
  }
  const query = (request.query as Record<string, unknown> | undefined)?.[queryParameter]
  return typeof query === 'string' && query !== '' ? query : undefined
}

interface JwtRequest { server: { jwt?: { verify: (token: string) => Record<string, unknown> } } }

/** The default `authenticate`: @fastify/jwt's `fastify.jwt.verify`, claims mapped to a principal. */
export async function jwtAuthenticate (request: FastifyRequest, token: string | undefined): Promise<Principal | undefined> {
  const jwt = (request as unknown as JwtRequest).server.jwt
  if (jwt === undefined) throw Object.assign(new WebSocketStabilizerError('config.ws.auth without authenticate needs @fastify/jwt registered'), { statusCode: 500 })
  if (token === undefined) return undefined
  let claims: Record<string, unknown>
  try {
    claims = jwt.verify(token)
  } catch (err) {
    throw Object.assign(new Error((err as Error).message), { statusCode: 401 })
  }
  return principalFromClaims(claims)
}

/** Maps JWT claims: `sub` → userId, `scope` (space-separated) or `scopes` → scopes, `exp` → expiresAt. */
export function principalFromClaims (claims: Record<string, unknown>): Principal {
  const scopes = typeof claims.scope === 'string' ? claims.scope.split(' ').filter(s => s !== '') : Array.isArray(claims.scopes) ? claims.scopes.map(String) : []
  return {
    userId: typeof claims.sub === 'string' ? claims.sub : undefined,
    scopes,
    claims,
    expiresAt: typeof claims.exp === 'number' ? claims.exp * 1000 : undefined
  }
}

/**
 * Runs the route's authentication: the principal, or why the client is refused. A throw
 * with `statusCode` 403 means forbidden, one with 5xx is rethrown (a server error), any
 * other means unauthorized.
 */
export async function authenticateRequest (auth: AuthSettings, request: FastifyRequest, token = findToken(request, auth.queryParameter)): Promise<Principal | AuthFailure | undefined> {
  let principal: Principal | null | undefined
  try {
    principal = await auth.authenticate(request, token)
  } catch (err) {
    const statusCode = (err as { statusCode?: number }).statusCode
    // a server error (a misconfiguration, a database down) is not the client's fault: Fastify answers it
    if (statusCode !== undefined && statusCode >= 500) throw err
    const status = statusCode === 403 ? 403 : 401
    return { status, message: (err as Error).message !== '' ? (err as Error).message : 'authentication failed' }
  }
  if (principal === null || principal === undefined) {
    return auth.anonymous ? undefined : { status: 401, message: token === undefined ? 'authentication required' : 'invalid credentials' }
  }
  if (principal.expiresAt !== undefined && principal.expiresAt <= Date.now()) return { status: 401, message: 'credentials expired' }
  const missing = auth.scopes.filter(scope => principal.scopes?.includes(scope) !== true)
  if (missing.length > 0) return { status: 403, message: `missing scope ${missing.join(', ')}` }
  return principal
}

export function isFailure (value: Principal | AuthFailure | undefined): value is AuthFailure {
  return value !== undefined && 'status' in value
}
