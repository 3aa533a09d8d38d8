import type { FastifyInstance, FastifyReply, FastifyRequest, RouteHandlerMethod, preHandlerAsyncHookHandler } from 'fastify'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { WebSocket } from 'ws'
import type { WsManager } from './manager.ts'
import { tokenFailure, type PendingResume, type UsedToken } from './resume/resumption.ts'
import type { Session } from './resume/sessions.ts'
import type { RouteSettings } from './route-settings.ts'
import { normalizeIdentity } from './identity.ts'
import { checkCapacity } from './limits.ts'
import { WebSocketStabilizerError } from './errors.ts'
import { authenticateRequest, isFailure, type AuthFailure, type Principal } from './auth.ts'
import type { PendingConnection } from './pending-connection.ts'
import type { RejectReason } from './stats.ts'
import { kPending } from './symbols.ts'
import { connectionOf, isOwnErrorListener } from './inbound/listeners.ts'

/*
 * A managed connection is prepared in two steps. Before the upgrade (a preHandler on
 * the route, so async work and HTTP errors are possible): capacity check and identify.
 * At the upgrade (ws' `connection` event, which @fastify/websocket emits just before it
 * calls the route handler): registration, so the handler finds `request.wsConnection`
 * already registered and no message can arrive before the plugin listens.
 *
 * Once registered, nothing of the upgrade stays with an idle connection but what its route
 * needs (the request, for routers and credential refresh): the HTTP response that
 * @fastify/websocket assigned to the socket is detached from it, and the socket `error`
 * listener it adds (a closure over the request and the reply) is removed, as Socket.IO's
 * memory guide drops `rawSocket.request`. A few KB per connection.
 */

interface PendingUpgrade extends PendingConnection {
  request: FastifyRequest
  /** The response @fastify/websocket made for the upgrade; detached from the socket once upgraded. */
  response: ServerResponse
  /** The socket's `end` and `close` listener of a looked-up resume (watchAbandon), until the upgrade is done. */
  abandon?: () => void
}

type RawWithPending = IncomingMessage & { [kPending]?: PendingUpgrade }

const RETRY_AFTER_SECONDS = '5'

/** The preHandler added to each managed WebSocket route. */
export function upgradePreHandler (manager: WsManager, route: RouteSettings): preHandlerAsyncHookHandler {
  return async function wsStabilizerPreHandler (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    if (!request.ws) return
    const origin = request.headers.origin
    if (route.allowedOrigins !== undefined && origin !== undefined && !route.allowedOrigins.has(origin)) {
      await refuse(manager, request, reply, 'origin', 403, `origin ${origin} is not allowed`)
      return
    }
    if (manager.draining) {
      await refuse(manager, request, reply, 'server_shutdown', 503, 'server shutting down')
      return
    }
    const full = checkCapacity(manager.registry, route, manager.options.limits.maxConnections)
    if (full !== undefined) {
      await refuse(manager, request, reply, 'connection_limit', 503, full)
      return
    }
    const perIp = manager.options.limits.maxConnectionsPerIp
    if (perIp > 0 && manager.registry.ipCount(request.ip) >= perIp) {
      await refuse(manager, request, reply, 'ip_limit', 429, `too many connections from this address (maxConnectionsPerIp ${perIp})`)
      return
    }
    let principal: Principal | undefined
    let refused: AuthFailure | undefined
    if (route.auth !== undefined) {
      const outcome = await authenticateRequest(route.auth, request)
      if (isFailure(outcome)) {
        if (route.auth.reject === 'http') {
          await refuse(manager, request, reply, outcome.status === 401 ? 'unauthorized' : 'forbidden', outcome.status, outcome.message)
          return
        }
        refused = outcome
      } else {
        principal = outcome
      }
    }
    const identity = normalizeIdentity(route.identify === undefined ? undefined : await route.identify(request))
    if (typeof identity === 'string') throw new WebSocketStabilizerError(`${identity} (route ${route.url})`)
    // the authenticated user is the user, whatever identify said
    if (principal?.userId !== undefined) identity.userId = principal.userId
    const numbered = route.reconnect !== undefined && asksNumbered(request)
    const resume = route.reconnect === undefined ? undefined : await readResume(manager, request, route, numbered)
    const userId = resume?.session?.userId ?? identity.userId
    const elsewhere = userId !== undefined && route.limits.maxConnectionsPerUser > 0 ? await manager.connectionsElsewhere(userId) : 0
    const window = numbered ? clientWindow(request) : undefined
    const pending: PendingUpgrade = { request, response: reply.raw, identity, route, resume, numbered, window, elsewhere, principal, refused }
    ;(request.raw as RawWithPending)[kPending] = pending
    if (resume?.used !== undefined) watchAbandon(manager, request, pending, resume.used, resume.session!)
  }
}

/**
 * A resume took its token's claim and its session before the upgrade: when the socket ends or
 * closes before the upgrade is done (or did during the lookup), they go back (`abandonResume`).
 * The listener goes once the socket is upgraded (`onConnection`).
 */
function watchAbandon (manager: WsManager, request: FastifyRequest, pending: PendingUpgrade, used: UsedToken, session: Session): void {
  const raw = request.raw as RawWithPending
  const abandon = (): void => {
    if (raw[kPending] !== pending) return
    raw[kPending] = undefined
    manager.abandonResume(used, session, request.log)
    settleResume(raw)
  }
  const socket = raw.socket
  if (socket.destroyed || socket.readableEnded) {
    abandon()
    return
  }
  pending.abandon = abandon
  // a client gone before its 101 ends its side: the socket is not read after the upgrade event,
  // so its end may come without a close
  socket.once('end', abandon)
  socket.once('close', abandon)
}

/**
 * Wraps the handler of each route that is not a WebSocket route (after @fastify/websocket
 * has wrapped it): an upgrade there would be accepted by @fastify/websocket and closed at
 * once with 1005 and no reason. It gets 404 instead, before the upgrade, as an unknown path
 * does: no WebSocket resource lives there (RFC 6455 4.1 names 404 for that), and 400 would
 * blame a request that is well formed. A wrapper rather than a hook: plain requests pay one
 * flag read (as they do for @fastify/websocket's own wrapper), not a hook run.
 */
export function refuseUpgrades (handler: RouteHandlerMethod): RouteHandlerMethod {
  return function refuseUpgradeToPlainRoute (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) {
    if (!request.ws) return handler.call(this, request, reply)
    // the route's pattern, not request.url: a query string may carry a token
    const message = `Route ${request.method}:${request.routeOptions.url!} is not a WebSocket route`
    request.log.info({ route: request.routeOptions.url }, `websocket upgrade refused: ${message}`)
    reply.code(404).send({ statusCode: 404, error: 'Not Found', message })
    return undefined
  }
}

const ERRORS: Record<number, string> = { 401: 'Unauthorized', 403: 'Forbidden', 429: 'Too Many Requests', 503: 'Service Unavailable' }

/** Refuses the upgrade with an HTTP status; the reason is logged, never a token. */
async function refuse (manager: WsManager, request: FastifyRequest, reply: FastifyReply, why: RejectReason, status: number, message: string): Promise<void> {
  manager.refused(why)
  request.log.warn({ route: request.routeOptions.url, reason: why }, `websocket upgrade refused: ${message}`)
  if (status === 503 || status === 429) reply.header('retry-after', RETRY_AFTER_SECONDS)
  await reply.code(status).send({ statusCode: status, error: ERRORS[status], message })
}

/**
 * A resume asks with the token in the `resume` query parameter (or the `x-ws-resume`
 * header) and the last offset received in `offset` (or `x-ws-offset`). The token is
 * checked and used up here, before the upgrade, and the session taken from the store;
 * a bad token or a missing session means a fresh session.
 */
async function readResume (manager: WsManager, request: FastifyRequest, route: RouteSettings, numbered: boolean): Promise<PendingResume | undefined> {
  const query = request.query as Record<string, unknown>
  const token = query.resume ?? request.headers['x-ws-resume']
  if (token === undefined) return undefined
  const offset = count(query.offset ?? request.headers['x-ws-offset'] ?? '0')
  if (offset < 0) return { offset: 0, failed: 'invalid' }
  // protocol 2: the client's count of what it sent in the session, required on a resume
  const sent = numbered ? count(query.sent ?? request.headers['x-ws-sent']) : 0
  if (sent < 0) return { offset, failed: 'invalid' }
  await holdResume(manager, request.raw, token as string)
  const socket = request.raw.socket
  let claims
  try {
    claims = await manager.validateResumeToken(token as string, { until: Date.now() + CLAIMED_ELSEWHERE_MS, gone: () => socket.destroyed || socket.readableEnded })
  } catch (err) {
    settleResume(request.raw)
    return { offset, failed: tokenFailure(err) }
  }
  const pending = await manager.lookupSession(claims, offset, route)
  if (numbered) pending.sent = sent
  // what the lookup holds (a claimed token) is held until the upgrade or its give-back (watchAbandon)
  if (pending.used === undefined) settleResume(request.raw)
  return pending
}

/**
 * How long a resume whose token another instance has claimed waits for that one to give it
 * back: a client past its open timeout tries again, perhaps on another instance, while its
 * first try is still being looked up; that try gives the token back once its lookup is over.
 */
const CLAIMED_ELSEWHERE_MS = 2000

/** The resumes in flight on this instance, by token: settled once upgraded, given back, or gone. */
const inFlight = new WeakMap<WsManager, Map<string, Promise<void>>>()
const settles = new WeakMap<IncomingMessage, () => void>()

/**
 * A resume with a token another upgrade here is still resuming with waits for that one to be
 * upgraded or given back (a client past its open timeout tries again while its first try is
 * still being looked up, in a reconnect storm): then the token is either spent, or free again
 * and this try resumes. Without the wait, the second try would find the token in use
 * (`invalid`) and the first would give it back to nobody.
 */
async function holdResume (manager: WsManager, raw: IncomingMessage, token: string): Promise<void> {
  let resumes = inFlight.get(manager)
  if (resumes === undefined) inFlight.set(manager, resumes = new Map())
  const earlier = resumes.get(token)
  if (earlier !== undefined) await earlier
  const socket = raw.socket
  let done!: () => void
  const settled = new Promise<void>(resolve => { done = resolve })
  resumes.set(token, settled)
  const settle = (): void => {
    socket.off('close', settle)
    settles.delete(raw)
    if (resumes.get(token) === settled) resumes.delete(token)
    done()
  }
  settles.set(raw, settle)
  // whatever else happens to the request, its socket closes (one closed already is settled by
  // readResume or watchAbandon)
  socket.once('close', settle)
}

function settleResume (raw: IncomingMessage): void {
  settles.get(raw)?.()
}

/** A count or offset of the query or a header: a whole number of at most 15 digits, or -1. */
function count (raw: unknown): number {
  return typeof raw === 'string' && /^\d{1,15}$/.test(raw) ? Number(raw) : -1
}

/** Protocol 2 (numbered client frames) is asked for with `v=2` or `x-ws-version: 2`; anything else is protocol 1. */
function asksNumbered (request: FastifyRequest): boolean {
  return (request.query as Record<string, unknown>).v === '2' || request.headers['x-ws-version'] === '2'
}

/**
 * Protocol 2: the most unacknowledged frames the client keeps, from `w` (or `x-ws-window`),
 * a whole number from 1; anything else is as if it said nothing.
 */
function clientWindow (request: FastifyRequest): number | undefined {
  const window = count((request.query as Record<string, unknown>).w ?? request.headers['x-ws-window'])
  return window > 0 ? window : undefined
}

/** The websocketServer `connection` listener: registers the socket prepared by the preHandler. */
export function onConnection (manager: WsManager): (socket: WebSocket, raw: IncomingMessage) => void {
  return function wsStabilizerOnConnection (socket: WebSocket, raw: RawWithPending): void {
    const pending = raw[kPending]
    if (pending === undefined) return
    raw[kPending] = undefined
    if (pending.abandon !== undefined) {
      raw.socket.off('end', pending.abandon).off('close', pending.abandon)
      settleResume(raw)
    }
    // the upgraded socket is ws' now; the response would keep the request alive through it
    pending.response.detachSocket(pending.response.socket!)
    pending.request.wsConnection = manager.attach(socket, pending)
  }
}

/**
 * Wraps the WebSocket handler of a managed route, when the plugin registered
 * @fastify/websocket (so its `errorHandler` is the plugin's): @fastify/websocket adds an
 * `error` listener to each socket, a closure over the request and the reply, just before it
 * calls the handler. On a registered connection that listener has nothing to do (the
 * connection's own listener, added first, handles socket errors), so it is removed here and
 * the request and reply can be collected. This is the one place that relies on how
 * @fastify/websocket calls a handler.
 */
export function releaseUpgradeListener<H extends (this: FastifyInstance, socket: WebSocket, request: FastifyRequest) => unknown> (handler: H): H {
  return function wsStabilizerHandler (this: FastifyInstance, socket: WebSocket, request: FastifyRequest) {
    if (connectionOf(socket) !== undefined) {
      const listeners = socket.listeners('error')
      const last = listeners[listeners.length - 1]
      // never the connection's own: a socket must keep a listener that handles its errors
      if (!isOwnErrorListener(last)) socket.off('error', last as (err: Error) => void)
    }
    return handler.call(this, socket, request)
  } as H
}
