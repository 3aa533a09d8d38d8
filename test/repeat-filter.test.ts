import { test } from 'tap'
import { RepeatFilter } from '../lib/adapters/repeat-filter.ts'
import { decodeClusterMessage, encodeClusterMessage } from '../lib/adapters/cluster-codec.ts'
import type { ClusterMessage } from '../plugin.ts'

/*
 * A cluster message published twice (ioredis resends what was in flight at a reconnect) is
 * delivered once: each sender numbers its messages, each receiver remembers what it saw.
 */

test('a sender\'s number seen before is a repeat; a new sender, a new number, or one a little out of order is not', async (t) => {
  const filter = new RepeatFilter()
  t.notOk(filter.repeated('a', 5), 'the first message of a sender, whatever its number')
  t.ok(filter.repeated('a', 5), 'the same again')
  t.notOk(filter.repeated('a', 6))
  t.notOk(filter.repeated('b', 6), 'another sender counts on its own')
  t.notOk(filter.repeated('a', 9))
  t.notOk(filter.repeated('a', 8), 'out of order within the window')
  t.notOk(filter.repeated('a', 7))
  t.ok(filter.repeated('a', 8))
  t.equal(filter.repeats, 2)
})

test('below the window is a repeat; the window slides however many messages pass, and the oldest sender is forgotten past 1,024', async (t) => {
  const filter = new RepeatFilter()
  let repeats = 0
  for (let seq = 1; seq <= 5000; seq++) if (filter.repeated('a', seq)) repeats++
  t.equal(repeats, 0, '5,000 in a row, none a repeat')
  t.ok(filter.repeated('a', 5000 - 1024), 'at the floor: a sender\'s messages come in order, this one came')
  t.ok(filter.repeated('a', 1))
  t.ok(filter.repeated('a', 4500), 'within the window, after pruning: still known')
  t.notOk(filter.repeated('a', 5001))
  for (let i = 0; i < 1024; i++) filter.repeated(`sender ${i}`, 1)
  t.notOk(filter.repeated('a', 2), 'forgotten: its next message starts it again')
  t.ok(filter.repeated('sender 1023', 1), 'the newest senders are kept')
})

test('the codec carries the sender\'s number; a message without one (an earlier version) has none', async (t) => {
  const message: ClusterMessage = { type: 'broadcast', data: Buffer.from('{"a":1}'), binary: false, json: true, id: 'i:1' }
  t.equal(decodeClusterMessage(encodeClusterMessage('o', message, 42))?.seq, 42)
  const op: ClusterMessage = { type: 'result', id: 3, to: 'x', from: 'y', counts: { total: 1, succeeded: 1, failed: 0 } }
  t.match(decodeClusterMessage(encodeClusterMessage('o', op, 7)), { origin: 'o', seq: 7, message: op })
  const old = decodeClusterMessage(encodeClusterMessage('o', message))
  t.equal(old?.seq, undefined)
  t.notOk('seq' in old!, 'nothing to filter by')
})
