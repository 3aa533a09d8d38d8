import Fastify from 'fastify'
import wsStabilizer from '../../plugin.ts'
import { RedisAdapter } from '../../lib/adapters/redis.ts'

/*
 * One server process of `npm run bench:presence` (presence.ts), so that its CPU time is its
 * own: a presence route without rooms of its own (?id=&user=&name=; the name is the
 * connection's metadata), whose connections enter and leave room `r` when the parent says so
 * (wsManager.join / leave, over IPC): what is measured is presence's work, not the upgrade.
 * Each command answers with the CPU time (process.cpuUsage) and the monotonic clock
 * (process.hrtime, one clock for every process of the machine) read as it came.
 *
 * argv: <maxMembers> [<redisUrl> <prefix>] (no Redis: the in-memory adapter)
 */

export type PresenceServerCommand =
  /** Every connection whose id starts with `prefix` enters the room, in one turn. */
  | { cmd: 'joinAll', prefix: string }
  | { cmd: 'join', ids: string[] }
  | { cmd: 'leave', ids: string[] }
  /** For scale: a room broadcast of `data` (wsManager.broadcast); answers the CPU time it took. */
  | { cmd: 'broadcast', data: string }
  | { cmd: 'cpu' }
  | { cmd: 'exit' }

export interface PresenceServerAnswer {
  /** µs of CPU (user + system) of this process so far. */
  cpu: number
  /** process.hrtime.bigint() as a number of ns (exact enough for ms figures). */
  at: number
}

export interface PresenceServerReady { port: number, instanceId: string }

export const ROOM = 'r'

const [maxMembers, redisUrl, prefix] = process.argv.slice(2)

// the parent is gone: so is this process (a run never leaves servers behind)
process.on('disconnect', () => process.exit(0))

const app = Fastify()
await app.register(wsStabilizer, {
  heartbeat: { enabled: false },
  presence: { maxMembers: Number(maxMembers) },
  // the room's first states (a map of up to 10,000 users to each of 10,000 members) may wait a while in the send buffers
  backpressure: { maxBytes: 64 * 1024 * 1024, grace: 600_000 },
  ...(redisUrl === undefined ? {} : { adapter: new RedisAdapter({ url: redisUrl, prefix }) })
})
app.get('/ws', {
  websocket: true,
  config: {
    ws: {
      presence: true,
      identify: request => {
        const q = request.query as { id: string, user: string, name?: string }
        return { clientId: q.id, userId: q.user, metadata: q.name === undefined ? {} : { name: q.name } }
      }
    }
  }
}, () => {})
await app.listen({ port: 0, host: '127.0.0.1' })
const manager = app.wsManager
process.send!({ port: (app.server.address() as { port: number }).port, instanceId: manager.instanceId } satisfies PresenceServerReady)

function now (): PresenceServerAnswer {
  const { user, system } = process.cpuUsage()
  return { cpu: user + system, at: Number(process.hrtime.bigint()) }
}

process.on('message', (m: PresenceServerCommand) => {
  const answer = now()
  if (m.cmd === 'exit') {
    app.close().then(() => process.exit(0), () => process.exit(1))
    return
  }
  if (m.cmd === 'broadcast') {
    manager.broadcast(m.data, { room: ROOM }).then(() => process.send!({ cpu: now().cpu - answer.cpu, at: answer.at }), () => process.exit(1))
    return
  }
  if (m.cmd === 'joinAll') {
    for (const conn of [...manager.connections()]) if (conn.id.startsWith(m.prefix)) manager.join(conn.id, ROOM)
  } else if (m.cmd === 'join') {
    for (const id of m.ids) manager.join(id, ROOM)
  } else if (m.cmd === 'leave') {
    for (const id of m.ids) manager.leave(id, ROOM)
  }
  process.send!(answer)
})
