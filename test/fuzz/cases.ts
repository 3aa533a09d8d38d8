import { closePayload, encodeFrame, OP, type FrameSpec } from './raw-client.ts'
import { APP_LIMIT, FEED_LIMIT, MAX_FRAGMENTS } from './app.ts'
import type { Rng } from './prng.ts'
import type { Route } from './model.ts'

/*
 * Generators of bad (and some good) input, each a byte stream for one connection. What
 * the server must do with it is worked out by the model, not here.
 */

export type CaseKind = 'messages' | 'utf8' | 'frames' | 'bytes' | 'oversize' | 'protocol' | 'fragments' | 'fragflood' | 'abrupt'

export interface FuzzCase {
  kind: CaseKind
  route: Route
  /** The bytes, in the chunks they are written in. */
  chunks: Buffer[]
  /** How many frames (or blobs of random bytes) it holds. */
  frames: number
  /** Drop the socket right after the last chunk (abrupt disconnect). */
  destroy: boolean
  label: string
}

const KEYS = ['a', 'b', 'text', 'room', 'type', 'id', 'data', '__proto__', 'constructor', 'x y', '', 'é', '\u0000']
const TYPES = ['echo', 'add', 'join', 'leave', 'outline', 'mirror', 'crash', 'chat', 'ECHO', '', 'add ', '__proto__', 'constructor', 'toString', 'echo.result']

export function randomString (rng: Rng, max = 12): string {
  const n = rng.int(0, max)
  let s = ''
  for (let i = 0; i < n; i++) {
    s += rng.weighted([
      [8, () => String.fromCharCode(rng.int(0x20, 0x7e))],
      [1, () => String.fromCharCode(rng.int(0, 0x1f))],
      [1, () => String.fromCodePoint(rng.int(0xa0, 0x2fff))],
      [1, () => String.fromCodePoint(rng.int(0x1f600, 0x1f64f))],
      [1, () => rng.pick(['"', '\\', '{', '}', '[', ']', ','])]
    ] as const)()
  }
  return s
}

export function randomJson (rng: Rng, depth = 0): unknown {
  const leaf = depth >= 4 || rng.chance(0.45)
  if (leaf) {
    return rng.weighted<() => unknown>([
      [3, () => rng.int(-1000, 1000)],
      [1, () => rng.float() * 1e6 - 5e5],
      [1, () => rng.pick([0, -0, 1e308, -1e308, Number.MAX_SAFE_INTEGER, 5e-324])],
      [3, () => randomString(rng)],
      [1, () => rng.chance(0.5)],
      [1, () => null]
    ])()
  }
  if (rng.chance(0.5)) return Array.from({ length: rng.int(0, 5) }, () => randomJson(rng, depth + 1))
  const o: Record<string, unknown> = {}
  for (let i = rng.int(0, 4); i > 0; i--) Object.defineProperty(o, rng.pick(KEYS), { value: randomJson(rng, depth + 1), enumerable: true, configurable: true, writable: true })
  return o
}

/** A message text: valid requests, wrong types, random JSON, broken JSON. */
export function randomMessage (rng: Rng): string {
  const id = rng.weighted([[4, () => rng.int(0, 1e6)], [2, () => randomString(rng, 8)], [2, () => undefined], [1, () => randomJson(rng, 2)]] as const)()
  const valid = (): unknown => {
    const type = rng.pick(['echo', 'add', 'join', 'leave', 'outline', 'mirror', 'crash'])
    const data = type === 'echo'
      ? { text: randomString(rng, 30) }
      : type === 'add'
        ? { a: rng.int(-1e6, 1e6), b: rng.float() }
        : type === 'join' || type === 'leave'
          ? { room: rng.pick(['r1', 'r2', 'feed', 'x'.repeat(rng.int(1, 40)), randomString(rng, 10)]) }
          : type === 'outline'
            ? nestedList(rng, 0)
            : randomJson(rng)
    return { type, id, data }
  }
  const text = rng.weighted([
    [5, () => JSON.stringify(valid())],
    [3, () => JSON.stringify({ type: rng.pick(TYPES), id, data: randomJson(rng) })],
    [2, () => JSON.stringify(randomJson(rng))],
    [1, () => JSON.stringify({ type: randomJson(rng, 3), id, data: 1 })],
    [2, () => { const s = JSON.stringify(valid()); return s.slice(0, rng.int(0, s.length - 1)) }],
    [2, () => randomString(rng, 40)],
    [2, () => randomResponse(rng)],
    [1, () => rng.pick(['', ' ', 'null', 'undefined', 'NaN', '{"type":"add",}', "{'type':'add'}", '{"type":"add","data":{"a":1,"b":2}}x', '\uFEFF{"type":"echo"}', '{"type":"add","data":{"a":01,"b":2}}', '[]', '{}', '"add"'])]
  ] as const)()
  return text as string
}

/** An answer to a server request (none is ever pending here): good ones, bad ids, bad errors, broken JSON. */
function randomResponse (rng: Rng): string {
  const id = (): unknown => rng.weighted([[3, () => `s:${rng.int(0, 9)}`], [1, () => randomString(rng, 6)], [1, () => randomJson(rng, 2)]] as const)()
  return rng.weighted([
    [3, () => JSON.stringify({ type: 'response', id: id(), data: randomJson(rng) })],
    [2, () => JSON.stringify({ type: 'response', id: id(), error: rng.chance(0.5) ? { code: randomString(rng, 6), message: randomString(rng, 10) } : randomJson(rng, 2) })],
    [1, () => '{"type":"response"' + randomString(rng, 12)]
  ] as const)()
}

function nestedList (rng: Rng, depth: number): unknown {
  if (depth > 3 || rng.chance(0.4)) return rng.chance(0.9) ? randomString(rng, 8) : rng.int(0, 9)
  return Array.from({ length: rng.int(0, 4) }, () => nestedList(rng, depth + 1))
}

export function masked (rng: Rng, spec: FrameSpec): Buffer {
  return encodeFrame({ maskKey: rng.bytes(4), ...spec })
}

/** A message as one frame or as fragments, with pings between them now and then. */
export function messageFrames (rng: Rng, payload: Buffer, binary: boolean): Buffer[] {
  const opcode = binary ? OP.BINARY : OP.TEXT
  if (payload.length < 2 || rng.chance(0.6)) return [masked(rng, { opcode, payload })]
  const parts = rng.int(2, Math.min(6, payload.length))
  const cuts = [0]
  for (let i = 1; i < parts; i++) cuts.push(rng.int(0, payload.length))
  cuts.sort((a, b) => a - b)
  cuts.push(payload.length)
  const out: Buffer[] = []
  for (let i = 0; i < parts; i++) {
    out.push(masked(rng, { opcode: i === 0 ? opcode : OP.CONT, fin: i === parts - 1, payload: payload.subarray(cuts[i], cuts[i + 1]) }))
    if (rng.chance(0.2)) out.push(masked(rng, { opcode: OP.PING, payload: rng.bytes(rng.int(0, 20)) }))
  }
  return out
}

export function closeFrame (rng: Rng): Buffer {
  return masked(rng, { opcode: OP.CLOSE, payload: rng.chance(0.9) ? closePayload(rng.pick([1000, 1001, 4000, 3000, 1011]), randomString(rng, 20).slice(0, 20)) : Buffer.alloc(0) })
}

/** Text that is not UTF-8: lone continuation bytes, overlongs, surrogates, truncated sequences, 0xFF. */
export function invalidUtf8 (rng: Rng): Buffer {
  const bad = rng.pick([[0x80], [0xbf], [0xc0, 0xaf], [0xe0, 0x80, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xff], [0xfe], [0xe2, 0x82], [0xf0, 0x9f, 0x98]])
  const before = Buffer.from(randomString(rng, 10))
  const after = rng.chance(0.5) ? Buffer.from(randomString(rng, 10)) : Buffer.alloc(0)
  return Buffer.concat([before, Buffer.from(bad), after])
}

/** One protocol violation of a chosen kind. */
export function violation (rng: Rng): Buffer[] {
  const payload = Buffer.from(JSON.stringify({ type: 'add', id: 1, data: { a: 1, b: 2 } }))
  return rng.pick<() => Buffer[]>([
    () => [encodeFrame({ opcode: OP.TEXT, payload, masked: false })],
    () => [masked(rng, { opcode: rng.pick([3, 4, 5, 6, 7, 11, 12, 13, 14, 15]), payload })],
    () => [masked(rng, { opcode: OP.TEXT, rsv: rng.int(1, 7), payload })],
    () => [masked(rng, { opcode: OP.PING, fin: false, payload: Buffer.from('x') })],
    () => [masked(rng, { opcode: OP.PING, payload: Buffer.alloc(rng.int(126, 400)) })],
    () => [masked(rng, { opcode: OP.CLOSE, payload: Buffer.from([3]) })],
    () => [masked(rng, { opcode: OP.CLOSE, payload: closePayload(rng.pick([0, 999, 1004, 1005, 1006, 1015, 2999, 5000, 65535])) })],
    () => [masked(rng, { opcode: OP.CLOSE, payload: closePayload(1000, invalidUtf8(rng)) })],
    () => [masked(rng, { opcode: OP.CONT, payload })],
    () => [masked(rng, { opcode: OP.TEXT, fin: false, payload }), masked(rng, { opcode: OP.TEXT, payload })],
    () => [masked(rng, { opcode: OP.TEXT, fin: false, payload }), masked(rng, { opcode: OP.CONT, rsv: 4, payload })],
    () => [masked(rng, { opcode: OP.BINARY, lengthBits: 64, declaredLength: 2 ** 53 + rng.int(0, 1e6) })]
  ])()
}

export function randomFrame (rng: Rng): Buffer {
  const opcode = rng.weighted([[6, OP.TEXT], [3, OP.CONT], [2, OP.BINARY], [2, OP.PING], [1, OP.PONG], [1, OP.CLOSE], [1, rng.int(0, 15)]] as const)
  const payload = rng.weighted([
    [4, () => Buffer.from(randomMessage(rng))],
    [2, () => rng.bytes(rng.int(0, 40))],
    [1, () => Buffer.alloc(0)],
    [1, () => invalidUtf8(rng)],
    [1, () => closePayload(rng.int(990, 5010), randomString(rng, 5))]
  ] as const)()
  return masked(rng, {
    opcode,
    payload,
    fin: rng.chance(0.75),
    rsv: rng.chance(0.05) ? rng.int(1, 7) : 0,
    masked: rng.chance(0.97),
    lengthBits: rng.weighted([[10, undefined], [1, 16], [1, 64]] as const),
    declaredLength: rng.chance(0.05) ? payload.length + rng.int(-payload.length, 200) : undefined
  })
}

/** Splits a stream into chunks of random sizes, so frames arrive cut anywhere. */
export function chunked (rng: Rng, bytes: Buffer): Buffer[] {
  if (bytes.length < 2 || rng.chance(0.4)) return [bytes]
  const out: Buffer[] = []
  let at = 0
  while (at < bytes.length) {
    const n = rng.chance(0.3) ? rng.int(1, 3) : rng.int(1, Math.max(1, Math.ceil(bytes.length / 3)))
    out.push(bytes.subarray(at, at + n))
    at += n
  }
  return out
}

function textMessages (rng: Rng, n: number): Buffer[] {
  const out: Buffer[] = []
  for (let i = 0; i < n; i++) out.push(...messageFrames(rng, Buffer.from(randomMessage(rng)), false))
  return out
}

export function generate (rng: Rng, kind: CaseKind): FuzzCase {
  const route: Route = kind === 'oversize' ? rng.pick(['/app', '/feed']) : rng.chance(0.85) ? '/app' : '/feed'
  let frames: Buffer[] = []
  let finish = rng.chance(0.8)
  let destroy = false
  let label: string = kind
  switch (kind) {
    case 'messages':
      frames = textMessages(rng, rng.int(1, 12))
      if (rng.chance(0.1)) frames.push(...messageFrames(rng, rng.bytes(rng.int(0, 30)), true))
      break
    case 'utf8':
      frames = [...textMessages(rng, rng.int(0, 2)), ...messageFrames(rng, invalidUtf8(rng), false)]
      break
    case 'frames':
      for (let i = rng.int(1, 20); i > 0; i--) frames.push(randomFrame(rng))
      break
    case 'bytes':
      frames = [rng.bytes(rng.int(2, 200))]
      if (rng.chance(0.5)) {
        // past the first checks (a plausible opcode, the mask bit), into lengths and payloads
        frames[0][0] = rng.pick([0x81, 0x82, 0x01, 0x02, 0x80, 0x89, 0x8a, 0x88])
        frames[0][1] |= 0x80
      }
      finish = false
      break
    case 'protocol':
      frames = [...textMessages(rng, rng.int(0, 3)), ...violation(rng)]
      break
    case 'oversize': {
      if (route === '/app' || rng.chance(0.3)) {
        // over ws' maxPayload: the header says it and ws stops there (the payload need not come)
        const size = APP_LIMIT + rng.int(1, 1 << 20)
        const lengthBits = 64
        frames = [masked(rng, { opcode: rng.pick([OP.TEXT, OP.BINARY]), lengthBits, declaredLength: size, payload: rng.bytes(rng.int(0, 100)) })]
        label = 'oversize header'
      } else if (rng.chance(0.5)) {
        // over the route's limit, under ws': the plugin closes once the message is in
        frames = [masked(rng, { opcode: OP.BINARY, payload: rng.bytes(FEED_LIMIT + rng.int(1, 4 * FEED_LIMIT)) })]
        label = 'oversize message'
      } else {
        const size = FEED_LIMIT + rng.int(1, 4 * FEED_LIMIT)
        const half = Math.ceil(size / 2)
        frames = [masked(rng, { opcode: OP.TEXT, fin: false, payload: Buffer.alloc(half, 0x61) }), masked(rng, { opcode: OP.CONT, payload: Buffer.alloc(size - half, 0x62) })]
        label = 'oversize fragments'
      }
      break
    }
    case 'fragments': {
      const payload = Buffer.from(JSON.stringify({ type: 'echo', id: rng.int(0, 1e6), data: { text: randomString(rng, 150) } }))
      const parts = rng.int(2, 300)
      const frameList: Buffer[] = [masked(rng, { opcode: OP.TEXT, fin: false, payload: payload.subarray(0, 1) })]
      for (let i = 1; i < parts; i++) {
        const from = Math.floor(1 + (payload.length - 1) * (i - 1) / (parts - 1))
        const to = Math.floor(1 + (payload.length - 1) * i / (parts - 1))
        frameList.push(masked(rng, { opcode: OP.CONT, fin: i === parts - 1, payload: payload.subarray(from, to) }))
        if (rng.chance(0.05)) frameList.push(masked(rng, { opcode: OP.PING }))
      }
      frames = frameList
      break
    }
    case 'fragflood': {
      const start = masked(rng, { opcode: OP.TEXT, fin: false, payload: Buffer.from('[') })
      const empty = masked(rng, { opcode: OP.CONT, fin: false })
      frames = [start, ...Array.from({ length: MAX_FRAGMENTS + rng.int(0, 100) }, () => empty)]
      finish = false
      break
    }
    case 'abrupt': {
      frames = textMessages(rng, rng.int(0, 4))
      const last = masked(rng, { opcode: OP.TEXT, payload: Buffer.from(randomMessage(rng) + ' '.repeat(rng.int(0, 200))) })
      frames.push(last.subarray(0, rng.int(1, last.length - 1)))
      finish = false
      destroy = true
      break
    }
  }
  if (finish) frames.push(closeFrame(rng))
  const bytes = Buffer.concat(frames)
  return { kind, route, chunks: kind === 'fragflood' ? [bytes] : chunked(rng, bytes), frames: frames.length, destroy, label }
}
