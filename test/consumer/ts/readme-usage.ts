/* The README Usage block, verbatim (test/regressions/published-types-compile-for-consumers.test.ts checks it is): it must compile in a strict TypeScript app. */
import Fastify from 'fastify'
import wsStabilizer, { wsConnectionOf } from 'fastify-websocket-stabilizer'

const app = Fastify({ logger: true })
await app.register(wsStabilizer, {
  heartbeat: { interval: 25_000, timeout: 60_000 },
  limits: { maxConnectionsPerUser: 5, maxMessageSize: 64 * 1024 }
})

app.get<{ Params: { room: string } }>('/chat/:room', {
  websocket: true,
  config: {
    ws: {
      // runs before the upgrade; throw an error with a statusCode to refuse it
      identify: (request) => {
        const { user } = request.query as { user?: string }
        return { userId: user, metadata: { agent: request.headers['user-agent'] } }
      }
    }
  }
}, (socket, request) => {
  const conn = wsConnectionOf(request) // registered before this handler runs: never null here
  conn.join(request.params.room)
  conn.on('message', (data) => {
    // serialized once, whatever the number of recipients
    app.wsManager.broadcast({ from: conn.userId, text: data.toString() }, { room: request.params.room, exclude: conn.id })
      .catch((err) => request.log.warn({ err }, 'broadcast failed'))
  })
})

app.get('/stats', async () => app.wsManager.getStats())

await app.listen({ port: 3000 })
