/*
 * The example server that `npm start` runs: a chat with rooms whose clients come back
 * after a drop with the messages they missed. Open http://localhost:3000/?user=alice and
 * http://localhost:3000/?user=bob (the page is examples/chat/, it imports the compiled
 * client from /client/index.js), or speak to ws://localhost:3000/ws?user=alice yourself.
 *
 * The route runs the resume protocol (PROTOCOL.md): the first frame is the plugin's
 * welcome, then every message below arrives as {"type":"message","offset":n,"data":…}.
 * Chat lines and notices are replayed after a resume; `state` and `users`, being the
 * state of now, are volatile (not replayed: a resumed connection gets them afresh).
 *
 *   connect    ws://…/ws?user=alice           → {"type":"state","user":"alice","rooms":["lobby"],"users":{"lobby":[…]}}
 *                                                the lobby gets {"type":"joined","room":"lobby","user":"alice"} (a new session only)
 *   send       {"type":"join","id":1,"data":{"room":"dev"}}  → the room gets {"type":"joined",…}; you get a new `state`
 *                                                and the answer {"type":"join.result","id":1,"data":{"room":"dev","users":[…]}}
 *                                                (the page uses client.request('join', { room }) for it)
 *   send       {"type":"leave","data":{"room":"dev"}}        → the room gets {"type":"left",…}; you get a new `state`
 *   send       {"type":"say","data":{"room":"dev","text":"hi"}} → the room (or everyone, without room) gets {"type":"said","from":"alice",…}
 *   anything else                             → {"type":"error","code":"UNKNOWN_TYPE"|"VALIDATION_FAILED"|…,"message":…} (not enveloped)
 *   any change of a room's members            → the room gets {"type":"users","room":"dev","users":["alice","bob"]}
 *   a drop                                    → `left` only if the session is not resumed within maxDisconnect
 *   GET /stats                                → the manager's counters
 *   POST /drop (with CHAT_DROP=1)             → cuts every connection's TCP socket, no close frame: watch the pages resume
 *   GET /ws-admin (bound to 127.0.0.1 only)   → the plugin's dashboard, open to anyone who can reach it: this machine
 *
 * Behind several instances (examples/cluster.ts) the chat lines reach everyone, sessions
 * resume anywhere and a room's user list is the cluster's (`wsManager.cluster.getRoomUsers`,
 * this instance's alone while Redis is away); join notices are this instance's view.
 * A page without a name is the user `anonymous`.
 */
import Fastify, { type FastifyInstance } from 'fastify'
import type { Socket } from 'node:net'
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Type } from '@sinclair/typebox'
import wsStabilizer, { defineMessages, optionsFromEnv, tokenSafeRequestSerializer, type ManagedConnection, type WsStabilizerOptions } from '../plugin.ts'
import { findDir, moduleFiles, pageFiles, serveFiles } from './static-files.ts'

const RoomName = Type.String({ pattern: '^[\\w-]{1,32}$', description: 'a room name is 1 to 32 letters, digits, _ or -' })
const RoomCommand = Type.Object({ room: RoomName })
const SayCommand = Type.Object({ room: Type.Optional(RoomName), text: Type.String({ maxLength: 10_000 }) })

const here = dirname(fileURLToPath(import.meta.url))
const MAX_TEXT = 2000
const MAX_NAME = 32
const ANONYMOUS = 'anonymous'
/** usersIn falls back on this instance's list and never rejects: nothing is left to handle. */
const ignore = (): void => {}

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
  /** The room's users on every instance; this instance's alone while the others cannot be asked (Redis down). */
  const usersIn = async (room: string): Promise<string[]> => {
    const users = await manager.cluster.getRoomUsers(room).catch((err: unknown) => {
      app.log.debug({ err }, 'chat user list: this instance\'s only')
      return manager.getRoomMembers(room).map(id => userOf(manager.getConnection(id)))
    })
    return [...new Set(users)].sort()
  }
  /** Whether `user` has a connection in `room` other than `except`: notices are per user, not per tab. */
  const present = (user: string, room: string, except?: string): boolean =>
    manager.getRoomMembers(room).some(id => id !== except && userOf(manager.getConnection(id)) === user)
  const broadcast = (message: object, room: string | undefined, extra: { volatile?: boolean, exclude?: string } = {}): void => {
    // BroadcastFailedError (every recipient's socket failed) or ShutdownError: nothing to do in a chat
    manager.broadcast(message, { room, ...extra }).catch((err: unknown) => app.log.debug({ err }, 'chat broadcast failed'))
  }
  const announce = (type: 'joined' | 'left', room: string, user: string): void => broadcast({ type, room, user, at: Date.now() }, room)
  const sendUsers = (room: string, exclude?: string): void => {
    usersIn(room).then(users => broadcast({ type: 'users', room, users }, room, { volatile: true, exclude }), ignore)
  }
  /** Resolves once sent (a connection closed meanwhile is not sent to). */
  const sendState = async (conn: ManagedConnection): Promise<void> => {
    const rooms = [...conn.rooms].sort()
    const users = await Promise.all(rooms.map(async room => [room, await usersIn(room)]))
    conn.send({ type: 'state', clientId: conn.id, user: userOf(conn), rooms, users: Object.fromEntries(users) }, { volatile: true })
  }
  const fail = (conn: ManagedConnection, error: string): void => { conn.send({ type: 'error', error }, { volatile: true }) }

  // Sessions whose connection dropped, by clientId: the timer of their `left` notices, cleared
  // if the session resumes here (a resumed connection keeps its clientId).
  const away = new Map<string, NodeJS.Timeout>()
  app.addHook('onClose', async () => {
    for (const timer of away.values()) clearTimeout(timer)
    away.clear()
  })

  // the commands: typed messages, each answered when it comes with an `id` (client.request)
  const messages = defineMessages({
    join: {
      schema: RoomCommand,
      handler: async ({ room }, { conn }) => {
        const user = userOf(conn)
        const first = !present(user, room)
        if (conn.join(room)) {
          if (first) announce('joined', room, user)
          sendUsers(room)
        }
        sendState(conn).catch(ignore)
        return { room, users: await usersIn(room) }
      }
    },
    leave: {
      schema: RoomCommand,
      handler: ({ room }, { conn }) => {
        const user = userOf(conn)
        const left = conn.leave(room)
        if (left) {
          if (!present(user, room)) announce('left', room, user)
          sendUsers(room)
        }
        sendState(conn).catch(ignore)
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
    if (!conn.isOpen) return
    const user = userOf(conn)
    // the metadata comes back with the session, on any instance: set on a new session only
    const resumed = conn.metadata.chatSince !== undefined
    conn.metadata.chatSince ??= Date.now()
    clearTimeout(away.get(conn.id))
    away.delete(conn.id)
    // the state first, then the notices
    sendState(conn).then(() => {
      if (!conn.isOpen) return
      for (const room of conn.rooms) {
        if (!resumed && !present(user, room, conn.id)) announce('joined', room, user)
        sendUsers(room, conn.id)
      }
    }, ignore)

    conn.on('close', (info) => {
      for (const room of info.rooms) sendUsers(room)
      // replaced: a resume took over the session while this socket was half-open; shutdown: nobody to tell
      if (info.disconnectReason === 'replaced' || info.disconnectReason === 'server_shutdown') return
      const gone = async (): Promise<void> => {
        away.delete(conn.id)
        for (const room of info.rooms) {
          // resumed on another instance (the same clientId), or still here in another tab
          if ((await manager.cluster.getRoomMembers(room)).includes(conn.id) || present(user, room)) continue
          announce('left', room, user)
        }
      }
      const goneLater = (): void => { gone().catch((err: unknown) => app.log.debug({ err }, 'chat presence check failed')) }
      // a goodbye (the client's close(), a closed tab) ends the session; anything else may come back
      if (info.disconnectReason === 'client_close' && (info.code === 1000 || info.code === 1001)) goneLater()
      else away.set(conn.id, setTimeout(goneLater, conn.route.reconnect!.maxDisconnect).unref())
    })
  })
  return app
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
