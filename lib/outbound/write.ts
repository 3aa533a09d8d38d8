import type { ManagedConnection } from '../connection.ts'
import type { Encoded } from './encode.ts'
import { CloseCode } from '../close-codes.ts'
import { kHeld, kHost, kSlowSince } from '../symbols.ts'
import { canWriteFrame, coalesce, compressingBytes, fragmentOpen, sendOptions, waitingBytes, whenFragmentEnds, writeFrame } from './frame.ts'

/**
 * The single place where the plugin writes a data message to a socket.
 * Returns undefined when the message was handed to the socket, or why it was not.
 * `control` frames (heartbeat, protocol frames) are not counted in the connection's stats.
 *
 * Slow consumers are caught here, before each write, by what waits on the socket (see
 * `waiting`): one whose send buffer would go past `backpressure.maxBytes`, or that stayed
 * above `highWaterMark` for longer than `grace`, is closed (1013) and gets nothing more;
 * under the `drop` policy, volatile messages are dropped while it is above the high-water
 * mark. Messages waiting for permessage-deflate are bounded on their own, by
 * `backpressure.maxDeflateBytes` (also a 1013 close).
 *
 * While the app has a fragmented message open, the message is held (see `Held` in connection.ts) and
 * written once the fragment ends; it counts in the stats when written.
 */
export function write (conn: ManagedConnection, message: Encoded, control = false, volatile = false): string | undefined {
  const socket = conn.socket
  if (!conn.isOpen || socket.readyState !== 1) return 'connection is not open'
  const waiting = waitingOf(conn)
  const compressing = compressingBytes(socket)
  if (waiting > 0 || compressing > 0) {
    const why = checkBackpressure(conn, waiting, compressing, message.data.length, volatile)
    if (why !== undefined) return why
  } else {
    conn[kSlowSince] = 0
  }
  if (conn[kHeld] === undefined && !fragmentOpen(socket)) return put(conn, message, control)
  hold(conn, message, control)
  return undefined
}

/** Bytes waiting on a connection's socket: its send buffer, and the messages held behind an open fragment. */
export function waitingOf (conn: ManagedConnection): number {
  return conn[kHeld] === undefined ? waitingBytes(conn.socket) : waitingBytes(conn.socket) + conn[kHeld].bytes
}

function put (conn: ManagedConnection, message: Encoded, control: boolean): string | undefined {
  const socket = conn.socket
  try {
    // the frame made once for every recipient, when ws would write the same bytes (see frame.ts)
    const route = conn.route
    if (canWriteFrame(socket)) {
      writeFrame(socket, message, route.backpressure.highWaterMark, route.flushDelay)
    } else {
      // with a flush delay, what ws writes itself waits in the same window, behind what came before
      if (route.flushDelay > 0) coalesce(socket, route.flushDelay)
      socket.send(message.data, sendOptions(socket, message))
    }
  /* c8 ignore next 3: ws does not throw on an open socket today; this keeps one bad socket from ending a broadcast loop if it ever does */
  } catch (err) {
    return (err as Error).message
  }
  if (!control) {
    conn.stats.messagesOut++
    conn.stats.bytesOut += message.data.length
  }
  return undefined
}

function hold (conn: ManagedConnection, message: Encoded, control: boolean): void {
  const held = conn[kHeld] ??= { messages: [], bytes: 0, stop: whenFragmentEnds(conn.socket, () => release(conn)) }
  held.messages.push([message, control])
  held.bytes += message.data.length
}

/** The app's fragmented message ended: what was held goes out now, in order, before anything else. */
function release (conn: ManagedConnection): void {
  const held = conn[kHeld]!
  conn[kHeld] = undefined
  for (const [message, control] of held.messages) put(conn, message, control)
}

/**
 * The connection ends with a fragment still open: what was held is never delivered.
 * Returns how many data messages that was (control frames are not counted).
 */
export function discardHeld (conn: ManagedConnection): number {
  const held = conn[kHeld]!
  conn[kHeld] = undefined
  held.stop()
  let count = 0
  for (const [, control] of held.messages) if (!control) count++
  return count
}

function checkBackpressure (conn: ManagedConnection, waiting: number, compressing: number, size: number, volatile: boolean): string | undefined {
  const rules = conn.route.backpressure
  if (waiting + size > rules.maxBytes) return slow(conn, `send buffer would exceed ${rules.maxBytes} bytes`)
  if (compressing > 0 && compressing + size > rules.maxDeflateBytes) return slow(conn, `compression queue would exceed ${rules.maxDeflateBytes} bytes`)
  if (waiting <= rules.highWaterMark) {
    conn[kSlowSince] = 0
    return undefined
  }
  const now = Date.now()
  if (conn[kSlowSince] === 0) conn[kSlowSince] = now
  else if (now - conn[kSlowSince] > rules.grace) return slow(conn, `above ${rules.highWaterMark} bytes for more than ${rules.grace} ms`)
  if (volatile && rules.policy === 'drop') {
    conn[kHost].dropped(conn)
    return 'dropped: slow consumer'
  }
  return undefined
}

/** Closes a slow consumer (it gets nothing more from now on) and says why. */
export function slow (conn: ManagedConnection, why: string): string {
  conn[kHost].close(conn, CloseCode.TRY_AGAIN_LATER, 'slow consumer', 'slow_consumer', { why })
  return `slow consumer: ${why}`
}
