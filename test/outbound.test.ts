import { test } from 'tap'
import { encode } from '../lib/outbound/encode.ts'
import { InvalidMessageError } from '../plugin.ts'

/* What can be sent (lib/outbound/encode.ts): text, binary or JSON, encoded once whatever the number of recipients. */

test('encode: text, binary and JSON, once', async (t) => {
  t.same(encode('hé'), { data: Buffer.from('hé'), binary: false })
  const buf = Buffer.from([1, 2])
  t.equal(encode(buf).data, buf, 'a Buffer is sent as is')
  const bytes = new Uint8Array([9, 8, 7, 6]).subarray(1, 3)
  t.same([...encode(bytes).data], [8, 7])
  t.equal(encode(bytes).binary, true)
  t.same([...encode(new Uint8Array([5, 6]).buffer).data], [5, 6])
  t.same(encode({ a: 1 }), { data: Buffer.from('{"a":1}'), binary: false, json: true })
  t.same(encode(42).data.toString(), '42')
  t.same(encode(null).data.toString(), 'null')
  t.throws(() => encode(() => 1), InvalidMessageError)
  t.throws(() => encode(undefined as unknown as string), { code: 'FST_WS_INVALID_MESSAGE' })
  const circular: Record<string, unknown> = {}
  circular.self = circular
  t.throws(() => encode(circular), { code: 'FST_WS_INVALID_MESSAGE', message: /circular/i })
})
