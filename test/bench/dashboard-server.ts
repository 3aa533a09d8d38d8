import Fastify from 'fastify'
import wsStabilizer from '../../plugin.ts'

/*
 * The server of the dashboard bench (dashboard.ts), in a child process of its own so that its
 * CPU time is its own: one route that joins each connection to the room of its query, and the
 * dashboard at /ws-admin (one tick a second). Over IPC: `{ cmd: 'cpu' }` answers `{ cpu }`,
 * `{ cmd: 'exit' }` closes.
 */

const app = Fastify()
await app.register(wsStabilizer, { dashboard: { authorize: 'unsafe-allow-all' } })
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
