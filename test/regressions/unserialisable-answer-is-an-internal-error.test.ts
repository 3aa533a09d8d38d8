import { test } from 'tap'
import type { AddressInfo } from 'node:net'
import { buildApp } from '../helpers.ts'
import { RawClient, OP } from '../fuzz/raw-client.ts'
import { errorKey, normalise } from '../fuzz/model.ts'

/* Found by test/fuzz.test.ts: a message handler's answer that JSON cannot serialise crashed the process instead of answering with an INTERNAL error frame. */

test('regression: a handler answer that cannot be serialised (too deep, BigInt) is an INTERNAL error frame, not a crash', async (t) => {
  const app = await buildApp(t, {}, app => {
    app.get('/ws', {
      websocket: true,
      config: { ws: { messages: { big: { handler: () => 10n }, later: { handler: async () => await Promise.resolve(10n) }, mirror: { handler: (d: unknown) => d } } } }
    }, () => {})
  })
  const errors: string[] = []
  app.wsManager.on('error', err => errors.push(err.message))
  const port = (app.server.address() as AddressInfo).port
  const c = await RawClient.open(port, '/ws')
  c.send({ opcode: OP.TEXT, payload: Buffer.from('{"type":"big","id":1}') })
  c.send({ opcode: OP.TEXT, payload: Buffer.from('{"type":"later","id":2}') })
  c.send({ opcode: OP.TEXT, payload: Buffer.from(`{"type":"mirror","id":3,"data":${'['.repeat(100_000)}${']'.repeat(100_000)}}`) })
  c.send({ opcode: OP.TEXT, payload: Buffer.from('{"type":"mirror","id":4,"data":"fine"}') })
  await c.until(() => c.frames.length >= 4, 3000)
  t.same(normalise('/app', c.texts()).sort(), [errorKey('INTERNAL', 1), errorKey('INTERNAL', 2), errorKey('INTERNAL', 3), '{"type":"mirror.result","id":4,"data":"fine"}'].sort())
  t.equal(errors.length, 3, 'each reported on the manager')
  c.destroy()
})
