import type { ClusterMessage, ClusterOp } from './adapter.ts'
import { isChanges } from '../presence/wire.ts'

/*
 * A ClusterMessage on the wire between instances: one line of JSON (the routing header,
 * with the sending instance) and then the payload's bytes as they are, so a message is
 * never re-serialized or base64-encoded on its way through Redis.
 */

interface Header {
  /** the sending instance */
  o: string
  /** its count of the messages it sent: a message published twice (a reconnect's resend) is told by it */
  s?: number
  t: ClusterMessage['type']
  r?: string[]
  x?: string[]
  u?: string
  c?: string
  b?: 1
  j?: 1
  v?: 1
  i?: string
  code?: number
  why?: string
  /** an op's or result's request id, the instance that asked (`f`) or is answered (`d`: also the instance an `answer` is for), the op's kind (`k`), room (`m`), counts (`n`) */
  q?: number
  f?: string
  d?: string
  k?: string
  m?: string
  n?: [number, number, number]
}

const NEWLINE = 0x0a

/** `seq`: the sender's count of its messages (repeat-filter.ts tells a repeat by it), omitted by senders that keep none. */
export function encodeClusterMessage (origin: string, message: ClusterMessage, seq?: number): Buffer {
  if (message.type === 'op') {
    // the op's own fields as the message of its kind has them, its payload after the line
    return encodeRouted({ o: origin, s: seq, t: 'op', q: message.id, f: message.from, k: message.op.type }, message.op)
  }
  if (message.type === 'presence') {
    const header: Header = { o: origin, s: seq, t: 'presence', f: message.from }
    if (message.sync !== undefined) header.k = message.sync
    return Buffer.from(JSON.stringify(header) + '\n' + JSON.stringify(message.changes))
  }
  if (message.type === 'result') {
    const { total, succeeded, failed } = message.counts
    return Buffer.from(JSON.stringify({ o: origin, s: seq, t: 'result', q: message.id, d: message.to, f: message.from, n: [total, succeeded, failed] } satisfies Header) + '\n')
  }
  return encodeRouted({ o: origin, s: seq, t: message.type }, message)
}

function encodeRouted (header: Header, message: Exclude<ClusterMessage, { type: 'op' | 'result' | 'presence' }> | ClusterOp): Buffer {
  if (message.type === 'join' || message.type === 'leave') {
    header.c = message.clientId
    header.m = message.room
    return Buffer.from(JSON.stringify(header) + '\n')
  }
  if (message.type === 'disconnect') {
    header.c = message.clientId
    header.code = message.code
    header.why = message.reason
    return Buffer.from(JSON.stringify(header) + '\n')
  }
  if (message.type === 'answer') {
    header.d = message.instance
    header.c = message.clientId
    return Buffer.concat([Buffer.from(JSON.stringify(header) + '\n'), message.data])
  }
  if (message.type === 'broadcast') {
    if (message.rooms !== undefined) header.r = message.rooms
    if (message.exclude !== undefined) header.x = message.exclude
  } else if (message.type === 'user') {
    header.u = message.userId
  } else {
    header.c = message.clientId
  }
  if (message.binary) header.b = 1
  if (message.json === true) header.j = 1
  if (message.volatile === true) header.v = 1
  if (message.id !== undefined) header.i = message.id
  return Buffer.concat([Buffer.from(JSON.stringify(header) + '\n'), message.data])
}

/** The sending instance and the message, or undefined for bytes that are not one. */
export function decodeClusterMessage (buffer: Buffer): { origin: string, seq?: number, message: ClusterMessage } | undefined {
  const end = buffer.indexOf(NEWLINE)
  if (end < 0) return undefined
  let header: Header
  try {
    header = JSON.parse(buffer.subarray(0, end).toString())
  } catch {
    return undefined
  }
  if (typeof header !== 'object' || header === null || typeof header.o !== 'string') return undefined
  const decoded = decodeBody(header, buffer, end)
  // a sender of an earlier version counts nothing
  if (decoded !== undefined && typeof header.s === 'number') return { ...decoded, seq: header.s }
  return decoded
}

function decodeBody (header: Header, buffer: Buffer, end: number): { origin: string, message: ClusterMessage } | undefined {
  if (header.t === 'op') {
    const op = decodeRouted(header.k, header, buffer, end, true)
    if (op === undefined || typeof header.q !== 'number' || typeof header.f !== 'string') return undefined
    return { origin: header.o, message: { type: 'op', id: header.q, from: header.f, op: op as ClusterOp } }
  }
  if (header.t === 'result') {
    const n = header.n
    if (typeof header.q !== 'number' || typeof header.d !== 'string' || typeof header.f !== 'string' || !Array.isArray(n)) return undefined
    return { origin: header.o, message: { type: 'result', id: header.q, to: header.d, from: header.f, counts: { total: Number(n[0]), succeeded: Number(n[1]), failed: Number(n[2]) } } }
  }
  if (header.t === 'presence') return decodePresence(header, buffer.subarray(end + 1))
  if (header.t === 'answer') return { origin: header.o, message: { type: 'answer', instance: String(header.d), clientId: String(header.c), data: buffer.subarray(end + 1) } }
  const message = decodeRouted(header.t, header, buffer, end, false)
  return message === undefined ? undefined : { origin: header.o, message: message as ClusterMessage }
}

/** A message of a kind that names its target in the header: the delivery kinds, and an op's room changes. */
function decodeRouted (kind: string | undefined, header: Header, buffer: Buffer, end: number, op: boolean): ClusterMessage | ClusterOp | undefined {
  // room changes are ops only, and an op never targets a user (sendToUser stays fire-and-forget)
  if (kind === 'join' || kind === 'leave') return op ? { type: kind, clientId: String(header.c), room: String(header.m) } : undefined
  if (kind === 'user' && op) return undefined
  if (kind === 'disconnect') return { type: 'disconnect', clientId: String(header.c), code: Number(header.code), reason: String(header.why) }
  const payload = { data: buffer.subarray(end + 1), binary: header.b === 1, json: header.j === 1, volatile: header.v === 1, id: header.i }
  if (kind === 'broadcast') return { type: 'broadcast', rooms: header.r, exclude: header.x, ...payload }
  if (kind === 'user') return { type: 'user', userId: String(header.u), ...payload }
  if (kind === 'client') return { type: 'client', clientId: String(header.c), ...payload }
  return undefined
}

function decodePresence (header: Header, payload: Buffer): { origin: string, message: ClusterMessage } | undefined {
  let changes: unknown
  try {
    changes = JSON.parse(payload.toString())
  } catch {
    return undefined
  }
  if (typeof header.f !== 'string' || !isChanges(changes)) return undefined
  const sync = header.k === 'ask' || header.k === 'answer' ? header.k : undefined
  return { origin: header.o, message: { type: 'presence', from: header.f, changes, sync } }
}
