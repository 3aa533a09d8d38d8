import Fastify from 'fastify'
import wsStabilizer, { MemoryAdapter } from '../../plugin.ts'
import type { PresenceEntry } from '../../lib/adapters/adapter.ts'

/*
 * The server of the dashboard bench (dashboard.ts), in a child process of its own so that its
 * CPU time is its own: one route that joins each connection to the room of its query, and the
 * dashboard at /ws-admin (one tick a second). Over IPC: `{ cmd: 'cpu' }` answers `{ cpu }`,
 * `{ cmd: 'exit' }` closes. With REMOTE=n, the adapter's presence tells of one other instance
 * holding n connections (users and rooms as the bench's own), so that the table lists them
 * after this instance's: the large remote presence of `--table`.
 */

const adapter = new MemoryAdapter()
const remote = Number(process.env.REMOTE ?? 0)
if (remote > 0) {
  const entries: PresenceEntry[] = Array.from({ length: remote }, (_, i) => ({ id: `x${i}`, userId: `u${i % 2000}`, rooms: [`r${i % 100}`] }))
  adapter.presence.instances = async () => [{ id: 'other', alive: true, connections: remote, lastHeartbeat: Date.now() }]
  adapter.presence.remoteConnections = async () => entries
}
const app = Fastify()
await app.register(wsStabilizer, { adapter, dashboard: { authorize: 'unsafe-allow-all' } })
app.get('/ws', {
  websocket: true,
  config: { ws: { identify: (request) => ({ userId: (request.query as { user?: string }).user }) } }
}, (_socket, request) => {
  request.wsConnection!.join((request.query as { room: string }).room)
})
await app.listen({ port: 0, host: '127.0.0.1' })
process.send!({ port: (app.server.address() as { port: number }).port })

process.on('message', (m: { cmd: 'cpu' | 'exit' }) => {
  if (m.cmd === 'cpu') process.send!({ cpu: process.cpuUsage() })
  else app.close().then(() => process.exit(0), () => process.exit(1))
})
