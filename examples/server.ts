/*
 * The example server that `npm start` runs: rooms and broadcast over plain JSON.
 *
 *   connect   ws://localhost:3000/ws?user=alice      → {"type":"welcome","clientId":…,"rooms":["lobby"]}
 *   send      {"type":"join","room":"dev"}           → the room gets {"type":"joined","room":"dev","clientId":…,"user":…}
 *   send      {"type":"leave","room":"dev"}          → the room gets {"type":"left",…}
 *   send      {"type":"say","text":"hi","room":"dev"} → the room (or everyone, without room) gets {"type":"said",…}
 *   GET       /stats                                  → the manager's counters
 */
import Fastify, { type FastifyInstance } from 'fastify'
import { fileURLToPath } from 'node:url'
import wsStabilizer, { optionsFromEnv, type ManagedConnection, type WsStabilizerOptions } from '../plugin.ts'

interface Command { type?: unknown, room?: unknown, text?: unknown }

export async function buildServer (options: WsStabilizerOptions = {}, logger: boolean = false): Promise<FastifyInstance> {
  const app = Fastify({ logger })
  await app.register(wsStabilizer, options)

  app.get('/stats', async () => app.wsManager.getStats())

  app.get<{ Querystring: { user?: string } }>('/ws', {
    websocket: true,
    config: {
      ws: {
        rooms: ['lobby'],
        identify: (request) => {
          const user = (request.query as { user?: string }).user
          return { userId: user === undefined || user === '' ? undefined : user }
        }
      }
    }
  }, (_socket, request) => {
    // never null on a managed route; not open when refused (say, by a per-user limit)
    const conn = request.wsConnection as ManagedConnection
    if (!conn.isOpen) return
    const manager = app.wsManager
    const user = conn.userId ?? 'anonymous'
    conn.send({ type: 'welcome', clientId: conn.id, user, rooms: [...conn.rooms] })

    conn.on('message', (data, isBinary) => {
      let command: Command
      try {
        command = isBinary ? {} : JSON.parse(data.toString()) as Command
      } catch {
        conn.send({ type: 'error', error: 'invalid JSON' })
        return
      }
      const room = typeof command.room === 'string' && command.room !== '' ? command.room : undefined
      if (command.type === 'join' && room !== undefined) {
        conn.join(room)
        manager.broadcast({ type: 'joined', room, clientId: conn.id, user }, { room }).catch(() => {})
      } else if (command.type === 'leave' && room !== undefined) {
        conn.leave(room)
        manager.broadcast({ type: 'left', room, clientId: conn.id, user }, { room }).catch(() => {})
      } else if (command.type === 'say' && typeof command.text === 'string') {
        manager.broadcast({ type: 'said', room, from: user, text: command.text }, { room }).catch(() => {})
      } else {
        conn.send({ type: 'error', error: 'expected {type: "join"|"leave"|"say", room?, text?}' })
      }
    })
  })
  return app
}

/* c8 ignore start: the entry point runs only under `npm start` */
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const port = Number(process.env.PORT ?? 3000)
  const app = await buildServer(optionsFromEnv(), true)
  await app.listen({ port, host: process.env.HOST ?? '0.0.0.0' })
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => { app.close().catch(() => process.exit(1)) })
  }
}
/* c8 ignore stop */
