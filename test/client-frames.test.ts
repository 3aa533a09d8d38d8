import { test } from 'tap'
import { fromBase64, pongFor } from '../lib/client/frames.ts'

test('frames: a pong sends the ping\'s ts back; base64 payloads decode', async (t) => {
  t.equal(pongFor('{"type":"ping","ts":17}'), '{"type":"pong","ts":17}', 'the ts goes back')
  t.same(fromBase64('AQID'), new Uint8Array([1, 2, 3]))
  t.same(fromBase64(''), new Uint8Array([]))
})
