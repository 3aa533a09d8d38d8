import type { LogEntry } from './replay-log.ts'

/*
 * A resume on another instance than the one whose log the client's offset belongs to.
 * Every instance logs every message (each with its own offsets, all with the same id), so
 * what the client missed is: the entries of its old log after its offset, then the
 * entries of this instance's log that the old log never took (it crashed, left, or had
 * not received them yet), from a little before the client's last message on.
 */

/** Clocks of two instances may differ by this much, in ms. */
export const CLOCK_MARGIN = 2000

/**
 * The entries of a copied log after `offset`, or undefined when they are not all there
 * (the copy was trimmed past it, has a hole, or never reached it): a gap.
 */
export function entriesAfter (copy: readonly LogEntry[], offset: number): LogEntry[] | undefined {
  if (copy.length === 0) return offset === 0 ? [] : undefined
  if (offset > copy[copy.length - 1].offset) return undefined
  let i = 0
  while (i < copy.length && copy[i].offset <= offset) i++
  const after = copy.slice(i)
  // offsets of one log are consecutive: a missing one was trimmed, or its copy never written
  for (let j = 0; j < after.length; j++) {
    if (after[j].offset !== offset + 1 + j) return undefined
  }
  return after
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
