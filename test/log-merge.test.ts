import { test } from 'tap'
import { entriesAfter, lastSeenAt } from '../lib/resume/log-merge.ts'
import type { LogEntry } from '../lib/resume/replay-log.ts'

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
