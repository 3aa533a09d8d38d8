import { test } from 'tap'
import { ReplayLog, type LogEntry } from '../lib/resume/replay-log.ts'

function entries (...offsets: number[]): LogEntry[] {
  return offsets.map(offset => ({ offset, id: `s:${offset}`, at: offset * 10, target: {}, frame: Buffer.from(String(offset)) }))
}

test('ReplayLog: entries since a time, and when it last evicted', async (t) => {
  const log = new ReplayLog(2, 1_000_000)
  for (const entry of entries(1, 2, 3)) log.append({ ...entry, offset: log.next() })
  t.equal(log.evictedUntil, 10, 'entry 1 (taken at 10) was evicted')
  t.same(log.since(25).map(e => e.offset), [3])
  t.same(log.since(0).map(e => e.offset), [2, 3])
  t.same(log.entries().map(e => e.offset), [2, 3])
})

test('ReplayLog: its oldest offset; after an offset, the merges of others left out', async (t) => {
  const log = new ReplayLog(10, 1_000_000)
  t.equal(log.first, 1, 'empty: the next offset')
  for (const entry of entries(1, 2, 3, 4)) log.append({ ...entry, offset: log.next(), target: entry.offset >= 2 && entry.offset <= 3 ? { merge: 2 } : {} })
  t.equal(log.first, 1)
  t.same(log.after(1)!.map(e => e.offset), [4], 'a client outside the merge')
  t.same(log.after(2)!.map(e => e.offset), [3, 4], 'a client at its marker')
  t.same(log.after(4), [])
  t.equal(log.after(5), undefined, 'ahead of the log')
})
