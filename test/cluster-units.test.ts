import { test } from 'tap'
import { decodeClusterMessage, encodeClusterMessage } from '../lib/adapters/cluster-codec.ts'
import { entriesAfter, lastSeenAt } from '../lib/log-merge.ts'
import { ReplayLog, type LogEntry } from '../lib/replay-log.ts'
import type { ClusterMessage } from '../plugin.ts'

test('cluster codec: every kind of message survives the trip, bytes untouched', async (t) => {
  const messages: ClusterMessage[] = [
    { type: 'broadcast', data: Buffer.from('{"a":1}'), binary: false, json: true, rooms: ['r'], exclude: ['x'], id: 'i:1' },
    { type: 'broadcast', data: Buffer.from([0, 10, 255]), binary: true, volatile: true },
    { type: 'user', userId: 'u', data: Buffer.from('text\nwith a newline'), binary: false },
    { type: 'client', clientId: 'c', data: Buffer.alloc(0), binary: false },
    { type: 'disconnect', clientId: 'c', code: 4001, reason: 'replaced' }
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

function entries (...offsets: number[]): LogEntry[] {
  return offsets.map(offset => ({ offset, id: `s:${offset}`, at: offset * 10, target: {}, frame: Buffer.from(String(offset)) }))
}

test('entriesAfter: what follows an offset in a copy, or a gap', async (t) => {
  t.same(entriesAfter([], 0), [], 'nothing logged, nothing received')
  t.equal(entriesAfter([], 3), undefined, 'an offset the copy never had')
  t.same(entriesAfter(entries(1, 2, 3), 1)!.map(e => e.offset), [2, 3])
  t.same(entriesAfter(entries(1, 2, 3), 3), [])
  t.same(entriesAfter(entries(4, 5), 3)!.map(e => e.offset), [4, 5], 'trimmed up to the client\'s offset: nothing missing')
  t.equal(entriesAfter(entries(5, 6), 3), undefined, 'offset 4 was trimmed')
  t.equal(entriesAfter(entries(1, 2), 5), undefined, 'ahead of the copy')
  t.equal(entriesAfter(entries(1, 2, 4), 1), undefined, 'a copy that was never written')
})

test('lastSeenAt: the time of the client\'s last entry, else its connection time', async (t) => {
  t.equal(lastSeenAt(entries(1, 2, 3), 2, 0), 20)
  t.equal(lastSeenAt(entries(1, 2, 3), 0, 7), 7)
  t.equal(lastSeenAt(entries(5), 4, 7), 7)
})

test('ReplayLog: entries since a time, and when it last evicted', async (t) => {
  const log = new ReplayLog(2, 1_000_000)
  for (const entry of entries(1, 2, 3)) log.append({ ...entry, offset: log.next() })
  t.equal(log.evictedUntil, 10, 'entry 1 (taken at 10) was evicted')
  t.same(log.since(25).map(e => e.offset), [3])
  t.same(log.since(0).map(e => e.offset), [2, 3])
  t.same(log.entries().map(e => e.offset), [2, 3])
})
