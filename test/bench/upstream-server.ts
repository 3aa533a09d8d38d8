import Fastify from 'fastify'
import wsStabilizer from '../../plugin.ts'

/*
 * The server of the bench's `upstream` part (upstream.ts), in a child process of its own so
 * that its CPU time is its own: one resume-protocol route whose listener counts the client's
 * messages. Over IPC: `{ cmd: 'cpu' }` answers `{ cpu }` (process.cpuUsage()), `{ cmd: 'expect', count }`
 * answers `{ done }` once the listener has had `count` more messages, `{ cmd: 'exit' }` closes.
 */

export type UpstreamCommand = { cmd: 'cpu' } | { cmd: 'expect', count: number } | { cmd: 'exit' }

const app = Fastify()
await app.register(wsStabilizer, { heartbeat: { interval: 60_000, timeout: 120_000 }, reconnect: { secret: 'bench-upstream-secret-0123456789a' } })
let received = 0
let waiting: { until: number } | undefined
app.get('/ws', { websocket: true, config: { ws: { reconnect: true } } }, (_socket, request) => {
  request.wsConnection!.on('message', () => {
    received++
    if (waiting !== undefined && received >= waiting.until) {
      waiting = undefined
      process.send!({ done: received })
    }
  })
})
await app.listen({ port: 0, host: '127.0.0.1' })
process.send!({ port: (app.server.address() as { port: number }).port })

process.on('message', (m: UpstreamCommand) => {
  if (m.cmd === 'cpu') {
    process.send!({ cpu: process.cpuUsage() })
  } else if (m.cmd === 'expect') {
    waiting = { until: received + m.count }
  } else {
    app.close().then(() => process.exit(0), () => process.exit(1))
  }
})
