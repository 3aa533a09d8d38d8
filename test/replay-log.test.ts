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
