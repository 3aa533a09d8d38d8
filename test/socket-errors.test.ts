import { test } from 'tap'
import { errorLevel, isTooLarge, sentCloseCode } from '../lib/inbound/socket-errors.ts'
import { buildInjectedApp, inject, until } from './helpers.ts'

/* What a socket error does: how loud it is in the logs, the close code the peer gets, the disconnect reason. */

test('socket errors: network to debug, protocol to warn, the rest to error', async (t) => {
  t.equal(errorLevel(Object.assign(new Error('reset'), { code: 'ECONNRESET', errno: -104 })), 'debug')
  t.equal(errorLevel(Object.assign(new Error('premature'), { code: 'ERR_STREAM_PREMATURE_CLOSE' })), 'debug')
  t.equal(errorLevel(Object.assign(new Error('rsv'), { code: 'WS_ERR_UNEXPECTED_RSV_2_3' })), 'warn')
  t.equal(errorLevel(new Error('bug')), 'error')
  t.equal(sentCloseCode(Object.assign(new Error('big'), { code: 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' })), 1009)
  t.equal(sentCloseCode(Object.assign(new Error('opcode'), { code: 'WS_ERR_INVALID_OPCODE' })), 1002)
  t.ok(isTooLarge(Object.assign(new Error('big'), { code: 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' })))
  t.notOk(isTooLarge(Object.assign(new Error('bogus length'), { code: 'WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH' })), 'a frame length over 2^53 is a protocol error, though ws closes with 1009 for it')
})

test('a protocol error (invalid UTF-8) closes only that socket with 1007', async (t) => {
  const reasons: string[] = []
  const app = await buildInjectedApp(t, {}, app => { app.get('/ws', { websocket: true }, () => {}) })
  app.wsManager.on('disconnect', (_c, info) => reasons.push(info.disconnectReason))
  const bystander = await inject(app, '/ws')
  const bad = await inject(app, '/ws')
  bad.ws.send(Buffer.from([0xff, 0xfe]), { binary: false })
  t.equal((await bad.closed).code, 1007)
  await until(() => reasons.length === 1)
  t.same(reasons, ['protocol_error'])
  t.equal((await app.wsManager.broadcast('ok')).succeeded, 1)
  t.equal(await bystander.next(), 'ok')
  await bystander.close()
})

test('ws\' own maxPayload check (no route raised it) closes with 1009 as message_too_large', async (t) => {
  const reasons: string[] = []
  const app = await buildInjectedApp(t, { limits: { maxMessageSize: 64 } }, app => { app.get('/ws', { websocket: true }, () => {}) })
  app.wsManager.on('disconnect', (_c, info) => reasons.push(info.disconnectReason))
  const client = await inject(app, '/ws')
  client.send('z'.repeat(65))
  t.equal((await client.closed).code, 1009)
  await until(() => reasons.length === 1)
  t.same(reasons, ['message_too_large'])
})
