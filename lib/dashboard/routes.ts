import { readFileSync } from 'node:fs'
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { WebSocket } from 'ws'
import type { DashboardAuthorization, ResolvedDashboardOptions } from '../options.ts'
import type { WsManager } from '../manager.ts'
import { LiveDashboards } from './live.ts'
import { managerSource } from './source.ts'
import { Tickets, ticketOf } from './tickets.ts'

/*
 * The dashboard's routes: the page, its script and style (files of the package, read once),
 * the ticket its socket opens with, and that socket. Every request but the socket's is asked
 * of `authorize`; the socket's carries a ticket issued to a request that was. The socket is
 * not managed by the plugin: it is not in the registry, the stats or the limits.
 */

const ASSETS = new URL('./assets/', import.meta.url)
const TYPES = { html: 'text/html; charset=utf-8', js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8', svg: 'image/svg+xml' }
/** What a Host header may hold, as it goes into the CSP's connect-src. */
const HOST = /^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/

function asset (name: string): string {
  return readFileSync(new URL(name, ASSETS), 'utf8')
}

/** The page's security headers: its own files only, its socket on this host. */
export function securityHeaders (host: string | undefined): Record<string, string> {
  const sockets = host !== undefined && HOST.test(host) ? ` ws://${host} wss://${host}` : ''
  return {
    'content-security-policy': `default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'${sockets}; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
    'referrer-policy': 'no-referrer',
    'cache-control': 'no-store'
  }
}

/** Who acts: authorize's `{ user }`, else `request.user` (as @fastify/jwt sets it), else the IP. */
export function actorOf (request: FastifyRequest, answer: DashboardAuthorization): string {
  if (typeof answer === 'object' && answer !== null) return answer.user
  const user = (request as { user?: unknown }).user
  if (typeof user === 'string' && user !== '') return user
  if (typeof user === 'object' && user !== null) {
    const u = user as Record<string, unknown>
    for (const key of ['sub', 'id', 'username', 'name', 'email']) {
      if (typeof u[key] === 'string' || typeof u[key] === 'number') return String(u[key])
    }
  }
  return `ip:${request.ip}`
}

function allowed (answer: DashboardAuthorization): boolean {
  return answer === true || (typeof answer === 'object' && answer !== null && typeof answer.user === 'string')
}

/** Adds the dashboard to the app; returns the open dashboards (for tests and the bench). */
export function registerDashboard (fastify: FastifyInstance, manager: WsManager, options: ResolvedDashboardOptions, parentLog: FastifyBaseLogger): LiveDashboards {
  const log = parentLog.child({ dashboard: options.path })
  const live = new LiveDashboards(managerSource(manager), options, log)
  const tickets = new Tickets()
  const actors = new WeakMap<FastifyRequest, string>()
  const { path, authorize } = options
  const page = asset('index.html').replaceAll('{{path}}', path)
  const script = asset('dashboard.js')
  const style = asset('dashboard.css')
  const icon = asset('favicon.svg')

  async function guard (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    reply.headers(securityHeaders(request.headers.host))
    const answer = authorize === 'unsafe-allow-all' ? true : await authorize(request, reply)
    if (allowed(answer)) {
      actors.set(request, actorOf(request, answer))
      return
    }
    const status = answer === 'unauthenticated' ? 401 : 403
    log.info({ status, ip: request.ip }, 'dashboard request refused')
    await reply.code(status).send({ statusCode: status, error: status === 401 ? 'Unauthorized' : 'Forbidden', message: status === 401 ? 'authentication required' : 'not allowed to see the dashboard' })
  }

  const files: Array<[string, string, string]> = [[path, page, TYPES.html], [`${path}/dashboard.js`, script, TYPES.js], [`${path}/dashboard.css`, style, TYPES.css], [`${path}/favicon.svg`, icon, TYPES.svg]]
  for (const [url, body, type] of files) {
    fastify.get(url, { onRequest: guard }, async (_request, reply) => await reply.type(type).send(body))
  }
  fastify.get(`${path}/ticket`, { onRequest: guard }, async (request) => ({ ticket: tickets.issue(actors.get(request)!), readOnly: options.readOnly }))

  // the socket: a ticket, from a page of this host (another site's page cannot read a ticket, but says who it is)
  const socketGuard = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const origin = request.headers.origin
    if (origin !== undefined && hostOf(origin) !== request.headers.host) {
      log.warn({ origin, ip: request.ip }, 'dashboard socket refused: another origin')
      await reply.code(403).send({ statusCode: 403, error: 'Forbidden', message: 'another origin' })
      return
    }
    const ticket = ticketOf(request.headers['sec-websocket-protocol'] as string | undefined)
    const actor = ticket === undefined ? undefined : tickets.take(ticket)
    if (actor === undefined) {
      await reply.code(401).send({ statusCode: 401, error: 'Unauthorized', message: 'a ticket from the dashboard page is required' })
      return
    }
    actors.set(request, actor)
  }
  fastify.get(`${path}/live`, { websocket: true, onRequest: socketGuard, config: { ws: { managed: false } } }, (socket: WebSocket, request: FastifyRequest) => {
    live.open(socket, actors.get(request)!)
  })

  fastify.addHook('onReady', async () => { live.start() })
  fastify.addHook('onClose', async () => { live.close() })
  return live
}

function hostOf (origin: string): string | undefined {
  try {
    return new URL(origin).host
  } catch {
    return undefined
  }
}
