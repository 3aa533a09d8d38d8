import { Type } from '@sinclair/typebox'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { defineMessages, type ManagedConnection, type WsStabilizerOptions } from '../../plugin.ts'
import { buildApp } from '../helpers.ts'

/*
 * The server under fuzz: a realistic app with a typed message router (schemas, per-type
 * and per-connection rate limits, rooms) on /app, and a resumable feed on /feed. Beside
 * them, for protocol 2, the other resume routes: typed messages with replay (/rapp) and
 * without (/rapp-nr, heartbeat in `message` mode), plain listeners without replay
 * (/feed-nr). All are in room `feed`, which a numbered sequence is broadcast to
 * throughout. On the resume routes `?ask=1` makes the server ask the client a request
 * (`hello`) once it is connected; how it was settled is kept in `asked`.
 */

/** ws' maxPayload: the largest route limit. */
export const APP_LIMIT = 256 * 1024
/** The plugin's maxMessageSize, in force on /feed. */
export const FEED_LIMIT = 16 * 1024
export const MAX_VIOLATIONS = 5
export const MAX_CONNECTIONS = 40
export const MAX_PER_IP = 5
/** ws' default maxFragments for servers. */
export const MAX_FRAGMENTS = 16 * 1024
/** Short, so that a message that never finishes is cut within the run; long enough for a loaded machine. */
export const HEARTBEAT = { interval: 300, timeout: 2500 }
/** Messages per second and burst on /app. */
export const APP_RATE = { messagesPerSecond: 200, burst: 100 }

export const Room = Type.Object({ room: Type.String({ minLength: 1, maxLength: 32 }) })
/** A nested list of strings: a recursive schema, the kind that recurses as deep as the data. */
export const Outline = Type.Recursive(Self => Type.Union([Type.String({ maxLength: 100 }), Type.Array(Self, { maxItems: 20 })]))
export const Echo = Type.Object({ text: Type.String({ maxLength: 200 }) })
export const Add = Type.Object({ a: Type.Number(), b: Type.Number() })

export const messages = defineMessages({
  echo: { schema: Echo, handler: (data) => ({ text: data.text }) },
  add: { schema: Add, handler: (data) => data.a + data.b },
  join: { schema: Room, handler: (data, { conn }) => conn.join(data.room) },
  leave: { schema: Room, handler: (data, { conn }) => conn.leave(data.room) },
  outline: { schema: Outline, handler: () => 'ok' },
  /** Answers with the data it got, whatever it is. */
  mirror: { handler: (data) => data },
  crash: { handler: () => { throw new Error('expected crash') } },
  slow: { rateLimit: { messagesPerSecond: 2 }, handler: async () => await Promise.resolve('done') }
})

export const SECRET = 'fuzz-secret-0123456789abcdef'
/** How long the server's requests wait: longer than any case, so that none times out in the middle of one. */
export const REQUEST_TIMEOUT = 8000

export const pluginOptions: WsStabilizerOptions = {
  limits: { maxConnections: MAX_CONNECTIONS, maxConnectionsPerIp: MAX_PER_IP, maxMessageSize: FEED_LIMIT },
  rateLimit: { maxViolations: MAX_VIOLATIONS },
  heartbeat: HEARTBEAT,
  closeTimeout: 500,
  shutdown: { timeout: 500 },
  // a log that keeps the whole run: a resume from an old offset never meets a gap by chance
  reconnect: { secret: SECRET, replayMessages: 100_000, replayBytes: 64 * 2 ** 20 }
}

function identify (request: { query: unknown }): { clientId?: string, userId?: string } {
  const q = request.query as { id?: unknown, user?: unknown }
  return {
    clientId: typeof q.id === 'string' && q.id !== '' && q.id.length <= 64 ? q.id : undefined,
    userId: typeof q.user === 'string' && q.user !== '' && q.user.length <= 64 ? q.user : undefined
  }
}

/** How each `?ask=1` request was settled, by clientId: `ok <answer as JSON>` or `err <code>`. */
export const asked = new Map<string, string>()

function ask (conn: ManagedConnection, request: { query: unknown }): void {
  if ((request.query as { ask?: unknown }).ask !== '1') return
  const id = conn.id
  conn.request('hello', { id }, { timeout: REQUEST_TIMEOUT }).then(
    answer => { asked.set(id, `ok ${JSON.stringify(answer)}`) },
    (err: Error & { clientCode?: string, code?: string }) => { asked.set(id, `err ${err.clientCode ?? err.code ?? err.message}`) })
}

/** The route's message listener: every message answered with its size, volatile. */
function plain (_socket: unknown, request: FastifyRequest): void {
  const conn = request.wsConnection!
  conn.on('message', (data) => { conn.send({ got: (data as Buffer).length }, { volatile: true }) })
  ask(conn, request)
}

export function routes (app: FastifyInstance): void {
  app.get('/app', {
    websocket: true,
    config: { ws: { identify, rooms: ['feed'], limits: { maxMessageSize: APP_LIMIT }, rateLimit: APP_RATE, messages } }
  }, () => {})
  app.get('/feed', { websocket: true, config: { ws: { identify, rooms: ['feed'], reconnect: true } } }, plain)
  app.get('/feed-nr', { websocket: true, config: { ws: { identify, rooms: ['feed'], reconnect: { replay: false } } } }, plain)
  app.get('/rapp', { websocket: true, config: { ws: { identify, rooms: ['feed'], reconnect: true, messages } } }, (_socket, request) => ask(request.wsConnection!, request))
  app.get('/rapp-nr', {
    websocket: true,
    config: { ws: { identify, rooms: ['feed'], reconnect: { replay: false }, messages, heartbeat: { mode: 'message' } } }
  }, (_socket, request) => ask(request.wsConnection!, request))
}

export async function buildFuzzApp (t: Parameters<typeof buildApp>[0], options: WsStabilizerOptions = pluginOptions): Promise<FastifyInstance> {
  return await buildApp(t, options, routes)
}
