import { test } from 'tap'
import { Writable } from 'node:stream'
import { buildApp, connect, until } from '../helpers.ts'

/*
 * Defect: a connection refused because the server is shutting down was logged (and
 * counted) as `connection_limit`, which sends whoever reads the logs after a limit that
 * was never reached. It is `server_shutdown`, both before the upgrade (HTTP 503) and
 * after it (an upgrade that was past the check when the shutdown began: 1012).
 */

interface Line { msg: string, reason?: string, code?: number }

function capture (): { lines: Line[], stream: Writable } {
  const lines: Line[] = []
  const stream = new Writable({ write (chunk: Buffer, _enc, done) { lines.push(JSON.parse(chunk.toString())); done() } })
  return { lines, stream }
}

test('an upgrade refused with 503 during shutdown is logged and counted as server_shutdown', async (t) => {
  const { lines, stream } = capture()
  const app = await buildApp(t, {}, app => { app.get('/ws', { websocket: true }, () => {}) }, { logger: { level: 'info', stream } })
  await app.wsManager.gracefulShutdown()
  await t.rejects(connect(app, '/ws'), { message: 'Unexpected server response: 503' })
  const refusal = lines.find(l => l.msg.startsWith('websocket upgrade refused'))
  t.match(refusal, { reason: 'server_shutdown', msg: 'websocket upgrade refused: server shutting down' })
  t.same(app.wsManager.getStats().rejectedTotal, { server_shutdown: 1 })
})

test('an upgrade that got past the check before the shutdown is closed with 1012 and logged as server_shutdown', async (t) => {
  const { lines, stream } = capture()
  let shutdownStarted!: () => void
  const started = new Promise<void>(resolve => { shutdownStarted = resolve })
  let identifying = false
  const app = await buildApp(t, {}, app => {
    app.get('/ws', { websocket: true, config: { ws: { identify: async () => { identifying = true; await started; return {} } } } }, () => {})
  }, { logger: { level: 'info', stream } })
  const client = connect(app, '/ws')
  await until(() => identifying)
  await app.wsManager.gracefulShutdown()
  shutdownStarted()
  t.equal((await (await client).closed).code, 1012)
  const refusal = lines.find(l => l.msg.startsWith('websocket refused'))
  t.match(refusal, { reason: 'server_shutdown', code: 1012, msg: 'websocket refused: server shutting down' })
  t.same(app.wsManager.getStats().rejectedTotal, { server_shutdown: 1 })
})
