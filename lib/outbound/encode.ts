import { InvalidMessageError } from '../errors.ts'
import type { Frameable } from './frame.ts'

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
