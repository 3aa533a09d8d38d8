import { test } from 'tap'
import { decodeClusterMessage, encodeClusterMessage } from '../lib/adapters/cluster-codec.ts'
import type { ClusterMessage } from '../plugin.ts'

test('cluster codec: every kind of message survives the trip, bytes untouched', async (t) => {
  const messages: ClusterMessage[] = [
    { type: 'broadcast', data: Buffer.from('{"a":1}'), binary: false, json: true, rooms: ['r'], exclude: ['x'], id: 'i:1' },
    { type: 'broadcast', data: Buffer.from([0, 10, 255]), binary: true, volatile: true },
    { type: 'user', userId: 'u', data: Buffer.from('text\nwith a newline'), binary: false },
    { type: 'client', clientId: 'c', data: Buffer.alloc(0), binary: false },
    { type: 'disconnect', clientId: 'c', code: 4001, reason: 'replaced' },
    { type: 'answer', instance: 'other', clientId: 'c', data: Buffer.from('{"type":"response","id":"s:x:1",\n"data":1}') }
  ]
  for (const message of messages) {
    const decoded = decodeClusterMessage(encodeClusterMessage('me', message))!
    t.equal(decoded.origin, 'me')
    const { data, ...rest } = decoded.message as ClusterMessage & { data?: Buffer }
    t.match(rest, { ...message, data: undefined })
    if ('data' in message) t.same(data, message.data)
  }
})

test('cluster codec: bytes that are not a message are refused, not thrown', async (t) => {
  for (const raw of ['no newline', 'not json\n', '42\n', 'null\n', '{"t":"user"}\n', '{"o":"x","t":"nope"}\n']) {
    t.equal(decodeClusterMessage(Buffer.from(raw)), undefined, raw)
  }
})
