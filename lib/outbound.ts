import { InvalidMessageError } from './errors.ts'
import type { ManagedConnection } from './connection.ts'
import { CloseCode } from './close-codes.ts'
import { kHost } from './symbols.ts'
import { canWriteFrame, writeFrame, type Frameable } from './frame.ts'

/** What can be sent: text, binary, or any JSON-serializable value (sent as JSON text). */
export type OutboundMessage = string | Buffer | Uint8Array | ArrayBuffer | object | number | boolean | null

/** A message encoded once, ready to be written to any number of sockets (and framed once for all of them). */
export interface Encoded extends Frameable {
  readonly data: Buffer
  readonly binary: boolean
  /** Text that is JSON (an encoded value), not a plain string. */
  readonly json?: boolean
}

/**
 * Serializes a message once. Text and JSON become one Buffer, so a broadcast
 * neither stringifies nor converts a string to bytes once per recipient.
 */
export function encode (message: OutboundMessage): Encoded {
  if (typeof message === 'string') return { data: Buffer.from(message), binary: false }
  if (Buffer.isBuffer(message)) return { data: message, binary: true }
  if (message instanceof Uint8Array) return { data: Buffer.from(message.buffer, message.byteOffset, message.byteLength), binary: true }
  if (message instanceof ArrayBuffer) return { data: Buffer.from(message), binary: true }
  let json: string | undefined
  try {
    json = JSON.stringify(message)
  } catch (err) {
    throw new InvalidMessageError(`${typeof message} (${(err as Error).message})`)
  }
  if (json === undefined) throw new InvalidMessageError(typeof message)
  return { data: Buffer.from(json), binary: false, json: true }
}

const TEXT = Object.freeze({ binary: false })
const BINARY = Object.freeze({ binary: true })

/**
 * The single place where the plugin writes a data message to a socket.
 * Returns undefined when the message was handed to the socket, or why it was not.
 * `control` frames (heartbeat, protocol frames) are not counted in the connection's stats.
 *
 * Slow consumers are caught here, before each write: a socket whose send buffer would go
 * past `backpressure.maxBytes`, or that stayed above `highWaterMark` for longer than
 * `grace`, is closed (1013) and gets nothing more; under the `drop` policy, volatile
 * messages are dropped while it is above the high-water mark.
 */
export function write (conn: ManagedConnection, message: Encoded, control = false, volatile = false): string | undefined {
  const socket = conn.socket
  if (!conn.isOpen || socket.readyState !== 1) return 'connection is not open'
  const buffered = socket.bufferedAmount
  if (buffered > 0) {
    const why = checkBackpressure(conn, buffered, message.data.length, volatile)
    if (why !== undefined) return why
  } else {
    conn.slowSince = 0
  }
  try {
    // the frame made once for every recipient, when ws would write the same bytes (see frame.ts)
    if (canWriteFrame(socket)) writeFrame(socket, message, conn.route.backpressure.highWaterMark)
    else socket.send(message.data, message.binary ? BINARY : TEXT)
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

function checkBackpressure (conn: ManagedConnection, buffered: number, size: number, volatile: boolean): string | undefined {
  const rules = conn.route.backpressure
  if (buffered + size > rules.maxBytes) return slow(conn, `send buffer would exceed ${rules.maxBytes} bytes`)
  if (buffered <= rules.highWaterMark) {
    conn.slowSince = 0
    return undefined
  }
  const now = Date.now()
  if (conn.slowSince === 0) conn.slowSince = now
  else if (now - conn.slowSince > rules.grace) return slow(conn, `above ${rules.highWaterMark} bytes for more than ${rules.grace} ms`)
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
