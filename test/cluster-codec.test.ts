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

test('cluster codec: the ops of wsManager.cluster and their results, payload bytes untouched', async (t) => {
  const messages: ClusterMessage[] = [
    { type: 'op', id: 1, from: 'i1', op: { type: 'broadcast', data: Buffer.from('{"a":1}'), binary: false, json: true, rooms: ['r'], exclude: ['x'], id: 'i:2' } },
    { type: 'op', id: 2, from: 'i1', op: { type: 'client', clientId: 'c', data: Buffer.from([0, 10, 255]), binary: true, volatile: true } },
    { type: 'op', id: 3, from: 'i1', op: { type: 'join', clientId: 'c', room: 'r' } },
    { type: 'op', id: 4, from: 'i1', op: { type: 'leave', clientId: 'c', room: 'r' } },
    { type: 'op', id: 5, from: 'i1', op: { type: 'disconnect', clientId: 'c', code: 4000, reason: 'bye' } },
    { type: 'result', id: 5, to: 'i1', from: 'i2', counts: { total: 3, succeeded: 2, failed: 1 } }
  ]
  for (const message of messages) {
    const decoded = decodeClusterMessage(encodeClusterMessage('me', message))!
    t.equal(decoded.origin, 'me')
    if (message.type !== 'op' || !('data' in message.op)) {
      t.same(decoded.message, message)
      continue
    }
    const { op: { data, ...rest }, ...outer } = decoded.message as typeof message & { op: { data: Buffer } }
    t.same(outer, { type: 'op', id: message.id, from: message.from })
    t.match(rest, { ...message.op, data: undefined })
    t.same(data, message.op.data)
  }
})

test('cluster codec: ops and results that do not fit are refused', async (t) => {
  for (const header of [
    { o: 'x', t: 'op', q: 1, f: 'i', k: 'user', u: 'u' },
    { o: 'x', t: 'op', q: 1, f: 'i', k: 'nope' },
    { o: 'x', t: 'op', f: 'i', k: 'join', c: 'c', m: 'r' },
    { o: 'x', t: 'op', q: 1, k: 'join', c: 'c', m: 'r' },
    { o: 'x', t: 'result', q: 1, d: 'i', f: 'j' },
    { o: 'x', t: 'result', q: '1', d: 'i', f: 'j', n: [0, 0, 0] },
    { o: 'x', t: 'result', q: 1, f: 'j', n: [0, 0, 0] },
    { o: 'x', t: 'result', q: 1, d: 'i', n: [0, 0, 0] },
    { o: 'x', t: 'join', c: 'c', m: 'r' },
    { o: 'x', t: 'leave', c: 'c', m: 'r' }
  ]) {
    t.equal(decodeClusterMessage(Buffer.from(JSON.stringify(header) + '\n')), undefined, JSON.stringify(header))
  }
})

test('cluster codec: presence changes and snapshots survive the trip', async (t) => {
  const messages: ClusterMessage[] = [
    { type: 'presence', from: 'i1', changes: [['j', 'lobby', 'alice', 'a1', 2, { name: 'A\nB' }], ['l', 'lobby', 'b1', 0], ['h', 'r', 'c1', 1, 500]] },
    { type: 'presence', from: 'i1', changes: [], sync: 'ask' },
    { type: 'presence', from: 'i2', changes: [['j', 'x', 'u', 'c', 0, {}]], sync: 'answer' }
  ]
  for (const message of messages) t.same(decodeClusterMessage(encodeClusterMessage('me', message)), { origin: 'me', message: { sync: undefined, ...message } })
})

test('cluster codec: presence messages that do not fit are refused', async (t) => {
  const bad = [
    '{"o":"x","t":"presence","f":"i"}\nnot json',
    '{"o":"x","t":"presence"}\n[]',
    '{"o":"x","t":"presence","f":"i"}\n{}',
    '{"o":"x","t":"presence","f":"i"}\n[1]',
    '{"o":"x","t":"presence","f":"i"}\n[["j","r"]]',
    '{"o":"x","t":"presence","f":"i"}\n[["j","r","u","c",0,null]]',
    '{"o":"x","t":"presence","f":"i"}\n[["j","r","u",1,0,{}]]',
    '{"o":"x","t":"presence","f":"i"}\n[["l","r","c","0"]]',
    '{"o":"x","t":"presence","f":"i"}\n[["h","r","c",0]]',
    '{"o":"x","t":"presence","f":"i"}\n[["x","r","c",0]]'
  ]
  for (const raw of bad) t.equal(decodeClusterMessage(Buffer.from(raw)), undefined, raw)
  t.match(decodeClusterMessage(Buffer.from('{"o":"x","t":"presence","f":"i","k":"other"}\n[]')), { message: { sync: undefined } }, 'an unknown sync kind is a plain change')
})
