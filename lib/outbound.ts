import { InvalidMessageError } from './errors.ts'
import type { ManagedConnection } from './connection.ts'

/** What can be sent: text, binary, or any JSON-serializable value (sent as JSON text). */
export type OutboundMessage = string | Buffer | Uint8Array | ArrayBuffer | object | number | boolean | null

/** A message encoded once, ready to be written to any number of sockets. */
export interface Encoded {
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
 * `control` frames (heartbeat) are not counted in the connection's stats.
 */
export function write (conn: ManagedConnection, message: Encoded, control = false): string | undefined {
  const socket = conn.socket
  if (!conn.isOpen || socket.readyState !== 1) return 'connection is not open'
  try {
    socket.send(message.data, message.binary ? BINARY : TEXT)
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
