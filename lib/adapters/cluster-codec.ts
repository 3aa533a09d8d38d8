import type { ClusterMessage } from './adapter.ts'

/*
 * A ClusterMessage on the wire between instances: one line of JSON (the routing header,
 * with the sending instance) and then the payload's bytes as they are, so a message is
 * never re-serialized or base64-encoded on its way through Redis.
 */

interface Header {
  /** the sending instance */
  o: string
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
  /** the instance an answer is for */
  n?: string
}

const NEWLINE = 0x0a

export function encodeClusterMessage (origin: string, message: ClusterMessage): Buffer {
  const header: Header = { o: origin, t: message.type }
  if (message.type === 'disconnect') {
    header.c = message.clientId
    header.code = message.code
    header.why = message.reason
    return Buffer.from(JSON.stringify(header) + '\n')
  }
  if (message.type === 'answer') {
    header.n = message.instance
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
export function decodeClusterMessage (buffer: Buffer): { origin: string, message: ClusterMessage } | undefined {
  const end = buffer.indexOf(NEWLINE)
  if (end < 0) return undefined
  let header: Header
  try {
    header = JSON.parse(buffer.subarray(0, end).toString())
  } catch {
    return undefined
  }
  if (typeof header !== 'object' || header === null || typeof header.o !== 'string') return undefined
  if (header.t === 'disconnect') return { origin: header.o, message: { type: 'disconnect', clientId: String(header.c), code: Number(header.code), reason: String(header.why) } }
  if (header.t === 'answer') return { origin: header.o, message: { type: 'answer', instance: String(header.n), clientId: String(header.c), data: buffer.subarray(end + 1) } }
  const payload = { data: buffer.subarray(end + 1), binary: header.b === 1, json: header.j === 1, volatile: header.v === 1, id: header.i }
  if (header.t === 'broadcast') return { origin: header.o, message: { type: 'broadcast', rooms: header.r, exclude: header.x, ...payload } }
  if (header.t === 'user') return { origin: header.o, message: { type: 'user', userId: String(header.u), ...payload } }
  if (header.t === 'client') return { origin: header.o, message: { type: 'client', clientId: String(header.c), ...payload } }
  return undefined
}
