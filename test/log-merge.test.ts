import { test } from 'tap'
import { Merges, entriesAfter, lastSeenAt, mergeAt, replayable } from '../lib/resume/log-merge.ts'
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

/** A log with a merge at 3 (its marker) of 4 and 5, then 6 of no merge, then a merge at 7 of 8. */
function merged (): LogEntry[] {
  return entries(1, 2, 3, 4, 5, 6, 7, 8).map(e => {
    const merge = e.offset >= 7 ? 7 : e.offset >= 3 && e.offset <= 5 ? 3 : undefined
    return merge === undefined ? e : { ...e, target: { merge } }
  })
}

test('mergeAt and entriesAfter: a client in a merge replays the rest of it and what is of no merge; others leave every merge out', async (t) => {
  t.equal(mergeAt(undefined, 5), undefined, 'nothing after it')
  t.equal(mergeAt({ ...entries(3)[0], target: { merge: 3 } }, 2), undefined, 'just before a marker: not in the merge')
  t.equal(mergeAt({ ...entries(4)[0], target: { merge: 3 } }, 3), 3, 'at the marker')
  t.same(entriesAfter(merged(), 1)!.map(e => e.offset), [2, 6], 'outside: no merge\'s entries')
  t.same(entriesAfter(merged(), 3)!.map(e => e.offset), [4, 5, 6], 'at the marker: the merge, then the rest, not the next merge')
  t.same(entriesAfter(merged(), 4)!.map(e => e.offset), [5, 6], 'in the middle')
  t.same(entriesAfter(merged(), 5)!.map(e => e.offset), [6], 'at its last entry: out of it')
  t.same(entriesAfter(merged(), 7)!.map(e => e.offset), [8], 'in the second merge')
  t.same(replayable(merged(), 8, 8), [], 'nothing left')
})

test('Merges: the newest merge by key, those whose start was evicted forgotten', async (t) => {
  const merges = new Merges()
  merges.set('a', 3, 1)
  merges.set('b', 7, 1)
  t.equal(merges.get('a'), 3)
  merges.set('a', 9, 1)
  t.equal(merges.get('a'), 9, 'the newest one')
  merges.set('c', 12, 8)
  t.equal(merges.get('b'), undefined, 'b started at 7, evicted')
  t.equal(merges.get('a'), 9)
  t.equal(merges.get('c'), 12)
  merges.clear()
  t.equal(merges.get('c'), undefined)
})
