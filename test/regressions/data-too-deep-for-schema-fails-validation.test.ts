import { test } from 'tap'
import type { AddressInfo } from 'node:net'
import { buildApp } from '../helpers.ts'
import { RawClient, OP } from '../fuzz/raw-client.ts'
import { errorKey, normalise } from '../fuzz/model.ts'

/* Found by test/fuzz.test.ts: data nested deeper than a recursive TypeBox schema can check crashed the process instead of failing validation (VALIDATION_FAILED). */

test('regression: data nested deeper than a recursive schema can check is VALIDATION_FAILED, not a crash', async (t) => {
  const { Type } = await import('@sinclair/typebox')
  const Tree = Type.Recursive(Self => Type.Array(Self))
  const app = await buildApp(t, {}, app => {
    app.get('/ws', { websocket: true, config: { ws: { limits: { maxMessageSize: 300_000 }, messages: { tree: { schema: Tree, handler: () => 'ok' } } } } }, () => {})
  })
  const port = (app.server.address() as AddressInfo).port
  const c = await RawClient.open(port, '/ws')
  c.send({ opcode: OP.TEXT, payload: Buffer.from(`{"type":"tree","id":1,"data":${'['.repeat(100_000)}${']'.repeat(100_000)}}`) })
  c.send({ opcode: OP.TEXT, payload: Buffer.from('{"type":"tree","id":2,"data":[[],[[]]]}') })
  await c.until(() => c.frames.length >= 2, 3000)
  t.same(normalise('/app', c.texts()), [errorKey('VALIDATION_FAILED', 1), '{"type":"tree.result","id":2,"data":"ok"}'])
  c.destroy()
})
