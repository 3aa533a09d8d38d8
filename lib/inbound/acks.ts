import type { ManagedConnection, UpstreamState } from '../connection.ts'
import { write } from '../outbound/write.ts'
import { kUpstream } from '../symbols.ts'

/*
 * Acknowledgements of a numbered client's frames (protocol 2, PROTOCOL.md): cumulative
 * `{"type":"ack","received":N}` frames. A connection whose frames are not all acknowledged
 * waits in one set; one timer, running only while the set is not empty, acknowledges them
 * all every `ACK_DELAY` ms. A connection with its threshold of unacknowledged frames gets its
 * ack at once, so that a fast sender never waits on the timer for room in its outbox: the
 * threshold is `ACK_EVERY`, or half the window the client says it keeps (`w`), if less.
 */

/** The longest a counted frame waits for its acknowledgement while the connection is open, in ms. */
export const ACK_DELAY = 200
/** How many unacknowledged frames make an ack go out at once, at most. */
export const ACK_EVERY = 64

/**
 * The threshold of a connection whose client keeps at most `window` unacknowledged frames
 * (its `maxQueueSize`): half of it, so that an ack is on its way while the client still has
 * room for the other half, at least 1 and at most `ACK_EVERY`.
 */
export function ackThreshold (window: number | undefined): number {
  return window === undefined ? ACK_EVERY : Math.max(1, Math.min(ACK_EVERY, Math.floor(window / 2)))
}

export class Acks {
  #waiting = new Set<ManagedConnection>()
  #timer: NodeJS.Timeout | undefined = undefined

  /** A frame was counted. */
  counted (conn: ManagedConnection, upstream: UpstreamState): void {
    const unacked = upstream.received - upstream.acked
    if (unacked >= upstream.every) {
      acknowledge(conn, upstream)
    } else if (unacked === 1) {
      this.#waiting.add(conn)
      this.#timer ??= setTimeout(this.#flush, ACK_DELAY).unref()
    }
  }

  /** The connection went away: nothing more to acknowledge (the session keeps the count). */
  delete (conn: ManagedConnection): void {
    this.#waiting.delete(conn)
  }

  #flush = (): void => {
    this.#timer = undefined
    for (const conn of this.#waiting) {
      const upstream = conn[kUpstream]!
      if (upstream.received > upstream.acked) acknowledge(conn, upstream)
    }
    this.#waiting.clear()
  }

  close (): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
    this.#waiting.clear()
  }
}

function acknowledge (conn: ManagedConnection, upstream: UpstreamState): void {
  upstream.acked = upstream.received
  write(conn, { data: Buffer.from(`{"type":"ack","received":${upstream.received}}`), binary: false }, true)
}
