import { test } from 'tap'
import { Writable } from 'node:stream'
import { buildApp, connect, until } from '../helpers.ts'

/*
 * Defect: a message over ws' maxPayload made ws send 1009 and stop reading, so the
 * socket's close event (no close frame read back) said 1006, and the disconnect line
 * and event said 1006 while the client got 1009. They carry the code that was sent.
 */

test('a message over maxMessageSize: the client gets 1009 and the disconnect line and event say 1009', async (t) => {
  const lines: Array<{ msg: string, code?: number, disconnectReason?: string }> = []
  const stream = new Writable({ write (chunk: Buffer, _enc, done) { lines.push(JSON.parse(chunk.toString())); done() } })
  const app = await buildApp(t, { limits: { maxMessageSize: 64 }, closeTimeout: 100 }, app => {
    app.get('/ws', { websocket: true }, () => {})
  }, { logger: { level: 'info', stream } })
  const codes: number[] = []
  app.wsManager.on('disconnect', (_c, info) => codes.push(info.code))
  const client = await connect(app, '/ws')
  client.send('z'.repeat(65))
  t.equal((await client.closed).code, 1009)
  await until(() => codes.length === 1)
  t.same(codes, [1009], 'the disconnect event')
  t.match(lines.find(l => l.msg === 'websocket disconnected'), { code: 1009, disconnectReason: 'message_too_large' }, 'the log line')
})

test('an invalid frame (text that is not UTF-8): the disconnect says 1007, as the client got', async (t) => {
  const app = await buildApp(t, { closeTimeout: 100 }, app => { app.get('/ws', { websocket: true }, () => {}) })
  const infos: Array<{ code: number, disconnectReason: string }> = []
  app.wsManager.on('disconnect', (_c, info) => infos.push({ code: info.code, disconnectReason: info.disconnectReason }))
  const client = await connect(app, '/ws')
  client.ws.send(Buffer.from([0xff, 0xfe]), { binary: false })
  t.equal((await client.closed).code, 1007)
  await until(() => infos.length === 1)
  t.same(infos, [{ code: 1007, disconnectReason: 'protocol_error' }])
})
