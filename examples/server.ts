/*
 * The example server that `npm start` runs: a chat with rooms whose clients come back
 * after a drop with the messages they missed. Open http://localhost:3000/?user=alice and
 * http://localhost:3000/?user=bob (the page is examples/chat/, it imports the compiled
 * client from /client/index.js), or speak to ws://localhost:3000/ws?user=alice yourself.
 *
 * The route runs the resume protocol (PROTOCOL.md): the first frame is the plugin's
 * welcome, then every message below arrives as {"type":"message","offset":n,"data":…}.
 * Chat lines and notices are replayed after a resume; `state`, being the state of now, is
 * volatile (not replayed: a resumed connection gets it afresh).
 *
 * Who is in a room ("here now" on the page) is the route's room presence (`presence: true`):
 * the plugin sends each member {"type":"presence.state","room":…,"users":{user:[…]}} when it
 * enters a room and {"type":"presence.diff",…} after (outside the envelope, never replayed),
 * and the client keeps the map (`client.presence(room)`). The join and leave notices come from
 * `wsManager.on('presence')`: a user joins with their first connection (tab, device) in a room
 * and leaves with their last.
 *
 *   connect    ws://…/ws?user=alice           → {"type":"state","user":"alice","rooms":["lobby"]}, then the lobby's presence.state
 *                                                the lobby gets {"type":"joined","room":"lobby","user":"alice"} (the user's first connection there)
 *   send       {"type":"join","id":1,"data":{"room":"dev"}}  → the room gets {"type":"joined",…}; you get a new `state`, dev's presence.state
 *                                                and the answer {"type":"join.result","id":1,"data":{"room":"dev","users":[…]}}
 *                                                (the page uses client.request('join', { room }) for it)
 *   send       {"type":"leave","data":{"room":"dev"}}        → the room gets {"type":"left",…} (the user's last connection there); you get a new `state`
 *   send       {"type":"say","data":{"room":"dev","text":"hi"}} → the room (or everyone, without room) gets {"type":"said","from":"alice",…}
 *   anything else                             → {"type":"error","code":"UNKNOWN_TYPE"|"VALIDATION_FAILED"|…,"message":…} (not enveloped)
 *   a drop                                    → held for its resume: `left` only if the session is not resumed within maxDisconnect
 *   GET /stats                                → the manager's counters
 *   POST /drop (with CHAT_DROP=1)             → cuts every connection's TCP socket, no close frame: watch the pages resume
 *   GET /ws-admin (bound to 127.0.0.1 only)   → the plugin's dashboard, open to anyone who can reach it: this machine
 *
 * Behind several instances (examples/cluster.ts) the chat lines reach everyone, sessions
 * resume anywhere (neither a leave nor a join), and presence is the cluster's by itself; each
 * notice is announced once, by the instance whose connection made the change.
 * A page without a name is the user `anonymous`.
 */
import Fastify, { type FastifyInstance } from 'fastify'
import type { Socket } from 'node:net'
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Type } from '@sinclair/typebox'
import wsStabilizer, { defineMessages, optionsFromEnv, tokenSafeRequestSerializer, type DisconnectInfo, type ManagedConnection, type WsStabilizerOptions } from '../plugin.ts'
import { findDir, moduleFiles, pageFiles, serveFiles } from './static-files.ts'

const RoomName = Type.String({ pattern: '^[\\w-]{1,32}$', description: 'a room name is 1 to 32 letters, digits, _ or -' })
const RoomCommand = Type.Object({ room: RoomName })
const SayCommand = Type.Object({ room: Type.Optional(RoomName), text: Type.String({ maxLength: 10_000 }) })

const here = dirname(fileURLToPath(import.meta.url))
const MAX_TEXT = 2000
const MAX_NAME = 32
const ANONYMOUS = 'anonymous'
/** ms either side of when a connection that ended here leaves its rooms (see `ours`). */
const SLACK = 1000
/** The close codes of a client that means to go: 1000, 1001 (a page going away), none (1005). */
const GOODBYES = new Set([1000, 1001, 1005])

export interface ChatOptions {
  /** The page's folder. Default: examples/chat, found from here in the sources and in dist/examples. */
  page?: string
  /** The compiled library, the folder holding client/index.js. Default: dist/lib. */
  lib?: string
  /**
   * `POST /drop`: cuts the TCP socket of every connection, as a network failure would, to
   * watch the clients resume. Default false: never on a server others can reach.
   */
  drop?: boolean
  /**
   * The plugin's dashboard at `/ws-admin`, open to anyone (`'unsafe-allow-all'`): the entry point
   * turns it on only when the server listens on the loopback interface. Default false.
   */
  dashboard?: boolean
}

/** Where the page and the compiled client are, run from the sources (tsx, tap) or from dist/. */
export function defaultAssets (): { page?: string, lib?: string } {
  return {
    page: findDir([resolve(here, 'chat'), resolve(here, '../../examples/chat')], 'index.html'),
    lib: findDir([resolve(here, '../lib'), resolve(here, '../dist/lib')], 'client/index.js')
  }
}

/** The chat. `chat` fields given as undefined turn the default off (no page, no client). */
export async function buildServer (options: WsStabilizerOptions = {}, logger: boolean = false, chat: ChatOptions = {}): Promise<FastifyInstance> {
  // resume tokens come in the query string: keep them out of the request log lines
  const app = Fastify({ logger: logger && { serializers: { req: tokenSafeRequestSerializer() } } })
  await app.register(wsStabilizer, chat.dashboard === true ? { ...options, dashboard: { path: '/ws-admin', authorize: 'unsafe-allow-all' } } : options)
  const manager = app.wsManager
  const { page, lib, drop } = { ...defaultAssets(), ...chat }

  if (page !== undefined) serveFiles(app, pageFiles(page))
  if (lib !== undefined) {
    serveFiles(app, moduleFiles(lib, 'client/index.js'))
  } else {
    app.log.warn('the compiled client was not found: the chat page needs `npm run build` first')
    app.get('/client/index.js', async (_request, reply) => await reply.code(503).type('text/plain').send('the client is not compiled: run `npm run build`'))
  }
  app.get('/stats', async () => manager.getStats())
  if (drop === true) {
    app.post('/drop', async () => {
      let dropped = 0
      for (const conn of manager.connections()) {
        (conn.socket as unknown as { _socket: Socket })._socket.destroy()
        dropped++
      }
      return { dropped }
    })
  }

  const userOf = (conn: ManagedConnection | undefined): string => conn?.userId ?? ANONYMOUS
  /** Who is in the room now, on every instance: its room presence. */
  const here = async (room: string): Promise<string[]> => Object.keys(await manager.presence(room)).sort()
  const broadcast = (message: object, room: string | undefined): void => {
    // BroadcastFailedError (every recipient's socket failed) or ShutdownError: nothing to do in a chat
    manager.broadcast(message, { room }).catch((err: unknown) => app.log.debug({ err }, 'chat broadcast failed'))
  }
  const announce = (type: 'joined' | 'left', room: string, user: string): void => broadcast({ type, room, user, at: Date.now() }, room)
  /** The rooms the connection is in now (volatile: a resumed connection gets it afresh). */
  const sendState = (conn: ManagedConnection): void => {
    conn.send({ type: 'state', clientId: conn.id, user: userOf(conn), rooms: [...conn.rooms].sort() }, { volatile: true })
  }
  const fail = (conn: ManagedConnection, error: string): void => { conn.send({ type: 'error', error }, { volatile: true }) }

  // The notices come from room presence: a user joins a room with their first connection in it
  // (a tab, a device, on any instance) and leaves it with their last; a drop that resumes within
  // maxDisconnect, here or on another instance, is neither. Every instance sees every change;
  // the one whose connection made it announces it to the room, once (the notice is logged for
  // replay like the chat lines). That connection is here (a join, a `leave` command), or ended
  // here, and then its leave comes when presence lets it go: at once for a goodbye, when its
  // hold ends for a drop (`ended`). A leave of that client at another time is the leave of the
  // instance it resumed on, which announces it.
  const ended = new Map<string, number>()
  manager.on('disconnect', (conn, info) => {
    // replaced: the session goes on in a newer connection, whose own end will count
    if (info.disconnectReason === 'replaced') return
    const now = Date.now()
    // in the order they ended: forget those whose leave came and went, up to the first still to come
    for (const [id, leaves] of ended) {
      if (leaves + SLACK >= now) break
      ended.delete(id)
    }
    ended.delete(conn.id)
    ended.set(conn.id, now + heldFor(info, conn.route.reconnect?.maxDisconnect ?? 0))
  })
  /** Whether a change of this client's connection is this instance's to announce. */
  const ours = (clientId: string): boolean => {
    if (manager.getConnection(clientId) !== undefined) return true
    const leaves = ended.get(clientId)
    return leaves !== undefined && Math.abs(Date.now() - leaves) <= SLACK
  }
  manager.on('presence', ({ room, joins, leaves }) => {
    for (const { userId, metas } of joins) if (metas.some(meta => ours(meta.clientId))) announce('joined', room, userId)
    for (const { userId, metas } of leaves) if (metas.some(meta => ours(meta.clientId))) announce('left', room, userId)
  })

  // the commands: typed messages, each answered when it comes with an `id` (client.request)
  const messages = defineMessages({
    join: {
      schema: RoomCommand,
      handler: async ({ room }, { conn }) => {
        conn.join(room)
        sendState(conn)
        return { room, users: await here(room) }
      }
    },
    leave: {
      schema: RoomCommand,
      handler: ({ room }, { conn }) => {
        const left = conn.leave(room)
        sendState(conn)
        return { room, left }
      }
    },
    say: {
      schema: SayCommand,
      handler: ({ room, text }, { conn }) => {
        if (text.trim() === '') return
        if (room !== undefined && !conn.rooms.has(room)) fail(conn, `join #${room} first`)
        else broadcast({ type: 'said', room, from: userOf(conn), text: text.slice(0, MAX_TEXT), at: Date.now() }, room)
      }
    }
  })

  app.get('/ws', {
    websocket: true,
    config: {
      ws: {
        rooms: ['lobby'],
        messages,
        heartbeat: { mode: 'message' }, // browsers cannot see protocol pings
        reconnect: true,
        // who is here, in every room, over every instance: the pages' "here now" lists
        presence: true,
        identify: (request) => {
          const user = (request.query as { user?: unknown }).user
          // one name for the pages without one, so that every instance lists them alike
          return { userId: typeof user === 'string' && user.trim() !== '' ? user.trim().slice(0, MAX_NAME) : ANONYMOUS }
        }
      }
    }
  }, (_socket, request) => {
    // never null on a managed route; not open when refused (say, by a per-user limit)
    const conn = request.wsConnection as ManagedConnection
    if (conn.isOpen) sendState(conn)
  })
  return app
}

/**
 * How long presence keeps a connection that ended in its rooms (README, Presence): a drop (or
 * a close other than a goodbye) may resume within maxDisconnect; a goodbye (1000, 1001, no
 * code) and a close of the server's leave at once.
 */
export function heldFor (info: Pick<DisconnectInfo, 'code' | 'disconnectReason'>, maxDisconnect: number): number {
  const why = info.disconnectReason
  if (why === 'network_error' || why === 'heartbeat_timeout' || why === 'server_shutdown') return maxDisconnect
  return why === 'client_close' && !GOODBYES.has(info.code) ? maxDisconnect : 0
}

/**
 * Where the examples listen: PORT (default `port`) on HOST, by default 127.0.0.1 only, so
 * that a demo (and `/drop` with CHAT_DROP=1) is not reachable from the network unless asked
 * (HOST=0.0.0.0, as in a container).
 */
export function listenOptions (env: NodeJS.ProcessEnv, port: number): { port: number, host: string } {
  return { port: Number(env.PORT ?? port), host: env.HOST ?? '127.0.0.1' }
}

/** True for the loopback interface only: there the dashboard may be open to anyone who can reach it (this machine). */
export function isLoopback (host: string): boolean {
  return host === '127.0.0.1' || host === 'localhost' || host === '::1'
}

/* c8 ignore start: the entry point runs only under `npm start` */
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { port, host } = listenOptions(process.env, 3000)
  const drop = process.env.CHAT_DROP === '1'
  const dashboard = isLoopback(host)
  const app = await buildServer(optionsFromEnv(), true, { drop, dashboard })
  await app.listen({ port, host })
  app.log.info(`chat: open http://localhost:${port}/?user=alice and http://localhost:${port}/?user=bob`)
  if (dashboard) app.log.info(`chat: the dashboard is at http://localhost:${port}/ws-admin (open to this machine only)`)
  else app.log.info('chat: no dashboard, the server is not bound to 127.0.0.1 (it would be open to anyone)')
  if (drop) app.log.info(`chat: \`curl -X POST http://localhost:${port}/drop\` cuts every connection`)
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => { app.close().catch(() => process.exit(1)) })
  }
}
/* c8 ignore stop */
