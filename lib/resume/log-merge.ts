import type { LogEntry } from './replay-log.ts'

/*
 * A resume on another instance than the one whose log the client's offset belongs to.
 * Every instance logs every message (each with its own offsets, all with the same id), so
 * what the client missed is: the entries of its old log after its offset, then the
 * entries of this instance's log that the old log never took (it crashed, left, or had
 * not received them yet), from a little before the client's last message on.
 *
 * Those are logged again here, so that they carry this log's offsets and a drop during the
 * replay loses nothing: as a merge, a run of entries that begins with a marker (an entry
 * never sent) and whose targets name the marker's offset (`target.merge`). The client's
 * welcome puts it at the marker. A client whose offset lies in a merge (from the marker to
 * the merge's last entry but one) replays the rest of that merge and what this log took
 * after it; every other client, and every other merge, leaves the merge's entries out. So
 * the clients that left an instance at the same point of its log, with the same rooms and
 * user, share one merge: a restart that moves k clients adds a few merges, not k copies of
 * what each of them missed.
 */

/** Clocks of two instances may differ by this much, in ms. */
export const CLOCK_MARGIN = 2000

/**
 * The merge that `offset` lies in, told by the entry that follows it (`next`): a merge's entry
 * after its marker's offset. Undefined for an offset outside any merge.
 */
export function mergeAt (next: LogEntry | undefined, offset: number): number | undefined {
  const merge = next?.target.merge
  return merge !== undefined && merge <= offset ? merge : undefined
}

/**
 * The entries from `entries[from]` on that a client at `offset` (the offset just before that
 * entry) replays: those of no merge, and those of the merge it lies in.
 */
export function replayable (entries: readonly LogEntry[], from: number, offset: number): LogEntry[] {
  const merge = mergeAt(entries[from], offset)
  const out: LogEntry[] = []
  for (let i = from; i < entries.length; i++) {
    const m = entries[i].target.merge
    if (m === undefined || m === merge) out.push(entries[i])
  }
  return out
}

/**
 * The entries of a copied log after `offset` that a client there replays (as `replayable`),
 * or undefined when they are not all there (the copy was trimmed past it, has a hole, or
 * never reached it): a gap.
 */
export function entriesAfter (copy: readonly LogEntry[], offset: number): LogEntry[] | undefined {
  if (copy.length === 0) return offset === 0 ? [] : undefined
  if (offset > copy[copy.length - 1].offset) return undefined
  let i = 0
  while (i < copy.length && copy[i].offset <= offset) i++
  // offsets of one log are consecutive: a missing one was trimmed, or its copy never written
  for (let j = i; j < copy.length; j++) {
    if (copy[j].offset !== offset + 1 + j - i) return undefined
  }
  return replayable(copy, i, offset)
}

/**
 * When the client's last message was taken by its old log: the time from which this
 * instance's log must add what the old one lacks. `connectedAt` when it had none there.
 */
export function lastSeenAt (copy: readonly LogEntry[], offset: number, connectedAt: number): number {
  for (const entry of copy) {
    if (entry.offset === offset) return entry.at
  }
  return connectedAt
}

/**
 * The merges made here, by what the clients that share one have in common (the old log, the
 * point they left it, their rooms and user): the first offset of the newest of each. Kept
 * while the log still holds that offset.
 */
export class Merges {
  #starts = new Map<string, number>()

  get (key: string): number | undefined {
    return this.#starts.get(key)
  }

  /** Records a merge; forgets those whose start the log evicted (`first`: its oldest offset). */
  set (key: string, start: number, first: number): void {
    this.#starts.delete(key)
    this.#starts.set(key, start)
    // in the order they were made, so the evicted ones come first
    for (const [k, s] of this.#starts) {
      if (s >= first) break
      this.#starts.delete(k)
    }
  }

  clear (): void {
    this.#starts.clear()
  }
}
