import { isUtf8 } from 'node:buffer'
import { Value } from '@sinclair/typebox/value'
import type { TSchema } from '@sinclair/typebox'
import { APP_LIMIT, FEED_LIMIT, MAX_FRAGMENTS, MAX_VIOLATIONS, Add, Echo, Outline, Room } from './app.ts'

/*
 * What the server must do with a byte stream, worked out independently: RFC 6455 framing
 * as a server reads it (the checks ws makes, in its order), then the plugin's rules for
 * each complete message (size, the router's error codes, violations). The fuzz test
 * compares the server's real answers and close code with this.
 */

export type Route = '/app' | '/feed'

export interface Expected {
  /** Normalised frames the server sends back (broadcasts left out). */
  outputs: string[]
  /** The close frame the server sends, or undefined when the stream just stops mid-way. */
  close: number | undefined
  /** The disconnectReason the server records (`network_error` once the test drops a pending stream). */
  reason: string
  /** How many complete data messages reached the plugin. */
  messages: number
}

interface Def { schema?: TSchema, answer: (data: unknown, rooms: Set<string>) => unknown, crash?: boolean }

const DEFS = new Map<string, Def>([
  ['echo', { schema: Echo, answer: d => ({ text: (d as { text: string }).text }) }],
  ['add', { schema: Add, answer: d => (d as { a: number }).a + (d as { b: number }).b }],
  ['join', { schema: Room, answer: (d, rooms) => { const r = (d as { room: string }).room; if (rooms.has(r)) return false; rooms.add(r); return true } }],
  ['leave', { schema: Room, answer: (d, rooms) => rooms.delete((d as { room: string }).room) }],
  ['outline', { schema: Outline, answer: () => 'ok' }],
  ['mirror', { answer: d => d }],
  ['crash', { answer: () => undefined, crash: true }]
])

/** An error frame, normalised: code and id (the message text is not part of the contract). */
export function errorKey (code: string, id: unknown): string {
  return id === undefined ? `error ${code}` : `error ${code} ${JSON.stringify(id)}`
}

/** The server's frames in the same form as `Expected.outputs`. */
export function normalise (route: Route, texts: string[]): string[] {
  return texts.map(text => {
    if (route === '/feed' && text.startsWith('{"type":"welcome"')) return 'welcome'
    if (text.startsWith('{"type":"error"')) {
      try {
        const f = JSON.parse(text) as { code: string, id?: unknown }
        return errorKey(f.code, f.id)
      } catch {}
    }
    return text
  })
}

/** Broadcast frames of the sequence, left out of comparisons. */
export const BROADCAST = /^\{"seq":\d+\}$|^\{"type":"message","offset":\d+,"data":\{"seq":\d+\}\}$/

const PROTOCOL = 'protocol_error'

export function expectedFor (route: Route, bytes: Buffer): Expected {
  const outputs: string[] = route === '/feed' ? ['welcome'] : []
  const rooms = new Set(['feed'])
  let violations = 0
  let messages = 0
  const maxPayload = APP_LIMIT
  const routeLimit = route === '/app' ? APP_LIMIT : FEED_LIMIT
  const end = (close: number, reason: string): Expected => ({ outputs, close, reason, messages })

  let at = 0
  let fragmented = 0
  let fragments: Buffer[] = []
  let total = 0
  let count = 0
  for (;;) {
    if (bytes.length - at < 2) break
    const b0 = bytes[at]
    const b1 = bytes[at + 1]
    if ((b0 & 0x30) !== 0) return end(1002, PROTOCOL)
    if ((b0 & 0x40) !== 0) return end(1002, PROTOCOL)
    const fin = (b0 & 0x80) !== 0
    let opcode = b0 & 0x0f
    let length = b1 & 0x7f
    if (opcode === 0) {
      if (fragmented === 0) return end(1002, PROTOCOL)
      opcode = fragmented
    } else if (opcode === 1 || opcode === 2) {
      if (fragmented !== 0) return end(1002, PROTOCOL)
    } else if (opcode >= 8 && opcode <= 10) {
      if (!fin) return end(1002, PROTOCOL)
      if (length > 125 || (opcode === 8 && length === 1)) return end(1002, PROTOCOL)
    } else {
      return end(1002, PROTOCOL)
    }
    if (!fin && fragmented === 0) fragmented = opcode
    if ((b1 & 0x80) === 0) return end(1002, PROTOCOL)
    let p = at + 2
    if (length === 126) {
      if (bytes.length - p < 2) break
      length = bytes.readUInt16BE(p)
      p += 2
    } else if (length === 127) {
      if (bytes.length - p < 8) break
      const high = bytes.readUInt32BE(p)
      if (high > 2 ** 21 - 1) return end(1009, PROTOCOL)
      length = high * 2 ** 32 + bytes.readUInt32BE(p + 4)
      p += 8
    }
    if (length > 0 && opcode < 8) {
      total += length
      if (total > maxPayload) return end(1009, 'message_too_large')
    }
    if (bytes.length - p < 4 + length) break
    const key = bytes.subarray(p, p + 4)
    const data = Buffer.allocUnsafe(length)
    for (let i = 0; i < length; i++) data[i] = bytes[p + 4 + i] ^ key[i & 3]
    at = p + 4 + length

    if (opcode >= 8) {
      if (opcode !== 8) continue
      if (length === 0) return end(1005, 'client_close')
      const code = data.readUInt16BE(0)
      if (!validCloseCode(code)) return end(1002, PROTOCOL)
      if (!isUtf8(data.subarray(2))) return end(1007, PROTOCOL)
      return end(code, 'client_close')
    }
    if (++count > MAX_FRAGMENTS) return end(1008, PROTOCOL)
    if (length > 0) fragments.push(data)
    if (!fin) continue
    const message = Buffer.concat(fragments)
    const binary = opcode === 2
    fragmented = 0
    fragments = []
    total = 0
    count = 0
    if (!binary && !isUtf8(message)) return end(1007, PROTOCOL)

    // the plugin's side
    messages++
    if (message.length > routeLimit) return end(1009, 'message_too_large')
    if (!binary && message.subarray(0, RESPONSE.length).equals(RESPONSE)) {
      outputs.push(response1(message))
      if (++violations > MAX_VIOLATIONS) return end(1008, 'invalid_messages')
      continue
    }
    if (route === '/feed') {
      outputs.push(`{"type":"message","data":{"got":${message.length}}}`)
      continue
    }
    const outcome = route1(message, binary, rooms)
    if (outcome.output !== undefined) outputs.push(outcome.output)
    if (outcome.violation && ++violations > MAX_VIOLATIONS) return end(1008, 'invalid_messages')
  }
  return { outputs, close: undefined, reason: 'network_error', messages }
}

const RESPONSE = Buffer.from('{"type":"response"')

/** What the server answers to a response frame on any route, no request being pending: always a violation. */
export function response1 (message: Buffer): string {
  let frame: { id?: unknown, error?: { code?: unknown } | null }
  try {
    frame = JSON.parse(message.toString())
  } catch {
    return errorKey('INVALID_JSON', undefined)
  }
  if (typeof frame.id !== 'string') return errorKey('INVALID_MESSAGE', undefined)
  const error = frame.error
  if (error !== undefined && (typeof error !== 'object' || error === null || typeof error.code !== 'string')) return errorKey('INVALID_MESSAGE', frame.id)
  return errorKey('UNKNOWN_REQUEST', frame.id)
}

/** What the router answers to one message on /app. */
export function route1 (message: Buffer, binary: boolean, rooms: Set<string>): { output: string | undefined, violation: boolean } {
  const reject = (code: string, id?: unknown): { output: string, violation: boolean } => ({ output: errorKey(code, id), violation: true })
  if (binary) return reject('BINARY_NOT_ALLOWED')
  let envelope: { type?: unknown, id?: unknown, data?: unknown }
  try {
    envelope = JSON.parse(message.toString())
  } catch {
    return reject('INVALID_JSON')
  }
  if (typeof envelope !== 'object' || envelope === null || typeof envelope.type !== 'string') return reject('INVALID_MESSAGE')
  const id = typeof envelope.id === 'string' || typeof envelope.id === 'number' ? envelope.id : undefined
  const def = DEFS.get(envelope.type)
  if (def === undefined) return reject('UNKNOWN_TYPE', id)
  if (def.schema !== undefined && !Value.Check(def.schema, envelope.data)) return reject('VALIDATION_FAILED', id)
  if (def.crash === true) return { output: errorKey('INTERNAL', id), violation: false }
  const value = def.answer(envelope.data, rooms)
  if (id === undefined) return { output: undefined, violation: false }
  return { output: JSON.stringify({ type: `${envelope.type}.result`, id, data: value ?? null }), violation: false }
}

function validCloseCode (code: number): boolean {
  return (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999)
}
