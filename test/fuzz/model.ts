import { isUtf8 } from 'node:buffer'
import { Value } from '@sinclair/typebox/value'
import type { TSchema } from '@sinclair/typebox'
import { APP_LIMIT, FEED_LIMIT, MAX_FRAGMENTS, MAX_VIOLATIONS, Add, Echo, Outline, Room } from './app.ts'

/*
 * What the server must do with a byte stream, worked out independently: RFC 6455 framing
 * as a server reads it (the checks ws makes, in its order), then the plugin's rules for
 * each complete message (size, heartbeat-like frames, protocol 2's count, the router's
 * error codes, answers to the server's requests, violations). The fuzz test compares the
 * server's real answers and close code with this.
 */

export type Route = '/app' | '/feed' | '/feed-nr' | '/rapp' | '/rapp-nr'

/** What a route is, as test/fuzz/app.ts sets it up. */
export interface RouteModel {
  /** Typed `messages` (the router) rather than a `message` listener that answers `{ got: <size> }`. */
  typed: boolean
  /** `config.ws.reconnect`: the resume protocol (and protocol 2 when asked for). */
  resumable: boolean
  replay: boolean
  /** `heartbeat.mode: 'message'`: short `{"type":"ping"…}` / `{"type":"pong"…}` frames are the heartbeat's. */
  messageHeartbeat: boolean
  /** limits.maxMessageSize */
  limit: number
}

export const ROUTES: Record<Route, RouteModel> = {
  '/app': { typed: true, resumable: false, replay: false, messageHeartbeat: false, limit: APP_LIMIT },
  '/feed': { typed: false, resumable: true, replay: true, messageHeartbeat: false, limit: FEED_LIMIT },
  '/feed-nr': { typed: false, resumable: true, replay: false, messageHeartbeat: false, limit: FEED_LIMIT },
  '/rapp': { typed: true, resumable: true, replay: true, messageHeartbeat: false, limit: FEED_LIMIT },
  '/rapp-nr': { typed: true, resumable: true, replay: false, messageHeartbeat: true, limit: FEED_LIMIT }
}

/**
 * What one connection starts from; `expectedFor` leaves in it what the connection leaves
 * behind (a resumed connection starts from its session's rooms and pending requests).
 */
export interface ConnState {
  /** Protocol 2: frames counted and acknowledged; exchange frames in envelopes on replaying routes. */
  numbered: boolean
  rooms: Set<string>
  /** The ids of the server's requests to this client that wait for its answer. */
  pending: Set<string>
  /** How the client settled them, in order: `ok <data as JSON>` or `err <code>`. */
  settled: string[]
  /** The first frame is the welcome (left out when the caller checks the welcome itself). */
  welcome: boolean
}

export function freshState (route: Route, numbered = false): ConnState {
  return { numbered, rooms: new Set(['feed']), pending: new Set(), settled: [], welcome: ROUTES[route].resumable }
}

export interface Expected {
  /** Normalised frames the server sends back (broadcasts left out). */
  outputs: string[]
  /** The close frame the server sends, or undefined when the stream just stops mid-way. */
  close: number | undefined
  /** The disconnectReason the server records (`network_error` once the test drops a pending stream). */
  reason: string
  /** How many complete data messages reached the plugin. */
  messages: number
  /** Protocol 2: how many of them were counted, and where in the stream each counted frame ends. */
  counted: number
  countedEnds: number[]
  /** The server heard from the client: a complete frame (data, ping, pong, a valid close) reached it. */
  heard: boolean
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

const ENVELOPE = /^\{"type":"message","offset":\d+,"data":/

/** The server's frames in the same form as `Expected.outputs`. */
export function normalise (route: Route, texts: string[]): string[] {
  return texts.map(text => normaliseOne(route, text))
}

function normaliseOne (route: Route, text: string): string {
  if (ROUTES[route].resumable && text.startsWith('{"type":"welcome"')) return 'welcome'
  // protocol 2 on a replaying route: the frames of an exchange come in envelopes with an offset
  const envelope = ENVELOPE.exec(text)
  if (envelope !== null) return `env ${normaliseOne(route, text.slice(envelope[0].length, -1))}`
  if (text.startsWith('{"type":"error"')) {
    try {
      const f = JSON.parse(text) as { code: string, id?: unknown }
      return errorKey(f.code, f.id)
    } catch {}
  }
  if (/^\{"type":"pong","ts":\d+\}$/.test(text)) return 'pong'
  if (text.startsWith('{"type":"request"')) return `request ${(JSON.parse(text) as { name: string }).name}`
  return text
}

/** The id of a request of the server in a frame (in an envelope or not), if it is one. */
export function requestId (text: string): string | undefined {
  const inner = text.replace(ENVELOPE, '')
  if (!inner.startsWith('{"type":"request"')) return undefined
  return (JSON.parse(ENVELOPE.test(text) ? inner.slice(0, -1) : inner) as { id: string }).id
}

/**
 * Frames left out of comparisons: the broadcast sequence (plain, in an envelope with or
 * without an offset) and the server's heartbeat in `message` mode.
 */
export const BROADCAST = /^\{"seq":\d+\}$|^\{"type":"message"(?:,"offset":\d+)?,"data":\{"seq":\d+\}\}$|^\{"type":"ping","ts":\d+\}$/

const PROTOCOL = 'protocol_error'
const PING = Buffer.from('{"type":"ping"')
const PONG = Buffer.from('{"type":"pong"')

function startsWith (message: Buffer, prefix: Buffer): boolean {
  return message.length >= prefix.length && message.subarray(0, prefix.length).equals(prefix)
}

export function expectedFor (route: Route, bytes: Buffer, state: ConnState = freshState(route)): Expected {
  const model = ROUTES[route]
  const outputs: string[] = state.welcome ? ['welcome'] : []
  const rooms = state.rooms
  let violations = 0
  let messages = 0
  const countedEnds: number[] = []
  let heard = false
  const maxPayload = APP_LIMIT
  const routeLimit = model.limit
  const end = (close: number, reason: string): Expected => ({ outputs, close, reason, messages, counted: countedEnds.length, countedEnds, heard })
  // protocol 2 on a replaying route: frames with an id come as envelopes
  const exchange = (output: string, id: boolean): string => id && state.numbered && model.replay ? `env ${output}` : output

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
      if (opcode !== 8) {
        heard = true
        continue
      }
      if (length === 0) {
        heard = true
        return end(1005, 'client_close')
      }
      const code = data.readUInt16BE(0)
      if (!validCloseCode(code)) return end(1002, PROTOCOL)
      if (!isUtf8(data.subarray(2))) return end(1007, PROTOCOL)
      heard = true
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
    heard = true
    if (message.length > routeLimit) return end(1009, 'message_too_large')
    // heartbeat-like: short text frames that start as the heartbeat's do, never counted
    const heartbeatLike = !binary && message.length < 128 && (startsWith(message, PING) || startsWith(message, PONG))
    if (model.messageHeartbeat && heartbeatLike) {
      if (startsWith(message, PING)) outputs.push('pong')
      continue
    }
    if (state.numbered && !heartbeatLike) countedEnds.push(at)
    if (!binary && startsWith(message, RESPONSE)) {
      const outcome = response1(message, state)
      if (outcome.output !== undefined) outputs.push(exchange(outcome.output, outcome.id))
      if (outcome.violation && ++violations > MAX_VIOLATIONS) return end(1008, 'invalid_messages')
      continue
    }
    if (!model.typed) {
      outputs.push(`{"type":"message","data":{"got":${message.length}}}`)
      continue
    }
    const outcome = route1(message, binary, rooms)
    if (outcome.output !== undefined) outputs.push(exchange(outcome.output, outcome.id))
    if (outcome.violation && ++violations > MAX_VIOLATIONS) return end(1008, 'invalid_messages')
  }
  return { outputs, close: undefined, reason: 'network_error', messages, counted: countedEnds.length, countedEnds, heard }
}

const RESPONSE = Buffer.from('{"type":"response"')

interface Outcome { output: string | undefined, violation: boolean, id: boolean }

/**
 * What the server answers to a response frame on any route: nothing when it answers one of
 * the client's pending requests (settled: the data, or the error's code), otherwise an
 * error frame, a violation.
 */
export function response1 (message: Buffer, state: Pick<ConnState, 'pending' | 'settled'> = { pending: new Set(), settled: [] }): Outcome {
  let frame: { id?: unknown, data?: unknown, error?: { code?: unknown } | null }
  try {
    frame = JSON.parse(message.toString())
  } catch {
    return { output: errorKey('INVALID_JSON', undefined), violation: true, id: false }
  }
  if (typeof frame.id !== 'string') return { output: errorKey('INVALID_MESSAGE', undefined), violation: true, id: false }
  const error = frame.error
  if (error !== undefined && (typeof error !== 'object' || error === null || typeof error.code !== 'string')) return { output: errorKey('INVALID_MESSAGE', frame.id), violation: true, id: true }
  if (!state.pending.delete(frame.id)) return { output: errorKey('UNKNOWN_REQUEST', frame.id), violation: true, id: true }
  state.settled.push(error === undefined ? `ok ${JSON.stringify(frame.data ?? null)}` : `err ${error.code as string}`)
  return { output: undefined, violation: false, id: true }
}

/** What the router answers to one message on a route with typed messages. */
export function route1 (message: Buffer, binary: boolean, rooms: Set<string>): Outcome {
  const reject = (code: string, id?: unknown): Outcome => ({ output: errorKey(code, id), violation: true, id: id !== undefined })
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
  if (def.crash === true) return { output: errorKey('INTERNAL', id), violation: false, id: id !== undefined }
  const value = def.answer(envelope.data, rooms)
  if (id === undefined) return { output: undefined, violation: false, id: false }
  return { output: JSON.stringify({ type: `${envelope.type}.result`, id, data: value ?? null }), violation: false, id: true }
}

function validCloseCode (code: number): boolean {
  return (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999)
}
