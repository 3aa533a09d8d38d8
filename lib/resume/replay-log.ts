/*
 * The log of recent messages for replay after a resume. Every logged message gets the
 * next offset of this instance: one offset for all its recipients, so a broadcast is
 * stored (and encoded) once. Bounded by count and bytes; the oldest entries go first.
 */

import { replayable } from './log-merge.ts'

/** Who a message was addressed to, to tell after the fact whether a session should get it. */
export interface Target {
  rooms?: string[]
  userId?: string
  clientId?: string
  exclude?: string[]
  /**
   * Set on the entries of a merge (see log-merge.ts): another instance's messages logged again
   * here, once for all the clients that resume from the same point of that log, and replayed
   * only to the clients whose offset lies in the merge. Its value is the merge's first offset.
   */
  merge?: number
}

export interface LogEntry {
  offset: number
  /**
   * The message's id in the cluster, the same in every instance's log: `<instance>:<offset>`
   * of the log that took it first.
   */
  id: string
  /** When this log took it (ms since the epoch). */
  at: number
  target: Target
  /** The frame as protocol clients receive it (offset included). */
  frame: Buffer
}

export class ReplayLog {
  #entries: LogEntry[] = []
  #head = 0
  #bytes = 0
  #offset = 0
  readonly maxMessages: number
  readonly maxBytes: number
  /** When the newest evicted entry was taken (0 while nothing was evicted). */
  evictedUntil = 0

  constructor (maxMessages: number, maxBytes: number) {
    this.maxMessages = maxMessages
    this.maxBytes = maxBytes
  }

  /** The offset of the last message logged (0 before the first). */
  get offset (): number {
    return this.#offset
  }

  get size (): number {
    return this.#entries.length - this.#head
  }

  /** Reserves the next offset. */
  next (): number {
    return ++this.#offset
  }

  /** Appends a copy of another log's entry, keeping its offset. */
  copy (entry: LogEntry): void {
    this.#offset = entry.offset
    this.append(entry)
  }

  append (entry: LogEntry): void {
    this.#entries.push(entry)
    this.#bytes += entry.frame.length
    while (this.size > this.maxMessages || (this.#bytes > this.maxBytes && this.size > 1)) {
      this.#bytes -= this.#entries[this.#head].frame.length
      this.evictedUntil = this.#entries[this.#head].at
      this.#head++
    }
    // compact now and then, not on every eviction
    if (this.#head > 1024 && this.#head * 2 > this.#entries.length) {
      this.#entries = this.#entries.slice(this.#head)
      this.#head = 0
    }
  }

  /** Every entry it holds, oldest first. */
  entries (): LogEntry[] {
    return this.#entries.slice(this.#head)
  }

  /** The entries it holds that it took at `since` or later, oldest first. */
  since (since: number): LogEntry[] {
    const out: LogEntry[] = []
    for (let i = this.#entries.length - 1; i >= this.#head && this.#entries[i].at >= since; i--) out.push(this.#entries[i])
    return out.reverse()
  }

  /** The offset of the oldest entry it holds (the next one while it holds none). */
  get first (): number {
    return this.size === 0 ? this.#offset + 1 : this.#entries[this.#head].offset
  }

  /**
   * The entries after `offset` a client there replays (the merges of others left out), or
   * undefined when some of them were already evicted or `offset` is ahead of the log (a gap
   * the log cannot cover).
   */
  after (offset: number): LogEntry[] | undefined {
    if (offset > this.#offset) return undefined
    if (offset === this.#offset) return []
    // every offset handed out was appended and the log never drops its newest entry, so it is not empty here
    if (offset + 1 < this.#entries[this.#head].offset) return undefined
    let i = this.#head
    while (this.#entries[i].offset <= offset) i++
    return replayable(this.#entries, i, offset)
  }
}
