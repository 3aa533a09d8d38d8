import { FEED_LIMIT } from './app.ts'
import { closeFrame, masked, messageFrames, randomFrame, randomJson, randomMessage, randomString, violation } from './cases.ts'
import { OP, encodeFrame } from './raw-client.ts'
import type { Rng } from './prng.ts'
import type { Route } from './model.ts'
import { AHEAD, type Params } from './resume-model.ts'

/*
 * Generators for protocol 2 (PROTOCOL.md "Protocol 2") on the resume routes: the upgrade
 * parameters `v`, `w`, `sent`, `resume`, `offset` in random combinations (query or headers),
 * batches of frames with the new kinds (answers to the server's requests with good, unknown,
 * malformed or another client's ids, errors without a code, oversized ones; requests with
 * huge or non-string ids; heartbeat-like frames on both sides of 128 bytes; duplicated and
 * garbled frames), and then resumes with every kind of `sent`, offset and token. Everything
 * is drawn here, from the case's generator; what the server must answer is the models'.
 */

export type ResumeRoute = Exclude<Route, '/app'>
export const RESUME_ROUTES: readonly ResumeRoute[] = ['/feed', '/feed-nr', '/rapp', '/rapp-nr']

/** Room for an id in a template: the frame has the same length whatever the id, so the stream is the seed's. */
export const ID_WIDTH = 16

/** A frame that answers a request whose id is known only once connected: the client's own, or another client's. */
export interface Template { to: 'own' | 'other', frame: (id: string) => Buffer }
export type Part = Buffer | Template

export interface Batch {
  parts: Part[]
  /**
   * After the last part: a close frame; nothing (the test waits for the answers and the acks,
   * then goes); or going at once. Going is without a close frame, by a FIN (the server reads
   * all that came before it), sometimes after a frame cut short.
   */
  end: 'close' | 'open' | 'destroy'
  frames: number
}

export type AttemptKind = 'good' | 'silent' | 'sentBelow' | 'sentAbove' | 'sentGarbage' | 'offsetGarbage' | 'tokenGarbage' | 'offsetAhead' | 'reuse'

export interface Attempt {
  kind: AttemptKind
  /** The connection's protocol parameters (v, w) and where the resume parameters go. */
  params: Params
  inHeaders: boolean
  /** For `sentBelow` / `sentAbove` / `good`: how far `sent` is from the server's count. */
  delta: number
  /** A malformed `sent` or offset (`undefined`: left out), or a bad token. */
  garbage: string | undefined
  twice: boolean
  /** `good`: resume from the offset of the session's first welcome rather than the last one received. */
  fromWelcome: boolean
  /** After a `silent` resume: come back with the token it used (whose welcome was "lost") rather than the new one. */
  oldToken: boolean
}

export interface NumberedCase {
  kind: 'numbered'
  route: ResumeRoute
  params: Params
  /** The server asks the client a request (`hello`) when it connects. */
  ask: boolean
  first: Batch
  attempts: Attempt[]
  /** On the connection the last good attempt opened. */
  then: Batch
  /** Once it ended: its token used again. */
  reuse: boolean
  frames: number
  label: string
}

/** The protocol parameters of one connection: mostly protocol 2, with windows of every shape. */
export function protocolParams (rng: Rng, numberedOnly = false): Params {
  const query: Array<[string, string]> = []
  const headers: Record<string, string> = {}
  rng.weighted<() => void>([
    [14, () => { query.push(['v', '2']) }],
    [2, () => { headers['x-ws-version'] = '2' }],
    [1, () => { query.push(['v', '1']); headers['x-ws-version'] = '2' }],
    [numberedOnly ? 0 : 1, () => { query.push(['v', rng.pick(['1', '3', '', '02', '2.0', 'two', ' 2', '2 '])]) }],
    [numberedOnly ? 0 : 1, () => { query.push(['v', '2'], ['v', '2']) }],
    [numberedOnly ? 0 : 1, () => { headers['x-ws-version'] = rng.pick(['1', '3', '02']) }],
    [numberedOnly ? 0 : 1, () => {}]
  ])()
  rng.weighted<() => void>([
    [3, () => {}],
    [4, () => { query.push(['w', String(rng.weighted([[3, rng.int(1, 8)], [2, rng.int(9, 200)], [1, rng.int(200, 10_000)]] as const))]) }],
    [1, () => { headers['x-ws-window'] = String(rng.int(1, 300)) }],
    [1, () => { query.push(['w', rng.pick(['0', '-4', 'x', '', '1e3', '1.5', '0007', '9'.repeat(16), String(2 ** 53), '+3'])]) }],
    [1, () => { query.push(['w', '4'], ['w', '8']) }],
    [1, () => { query.push(['w', rng.pick(['x', '0', '3'])]); headers['x-ws-window'] = '2' }]
  ])()
  return { query, headers, encode: rng.chance(0.2) }
}

/** A first connection's parameters: protocol ones, and now and then resume parameters that cannot resume anything. */
function firstParams (rng: Rng): Params {
  const params = protocolParams(rng)
  // without a token, `sent` and `offset` are nothing
  if (rng.chance(0.15)) params.query.push(['sent', rng.pick(['0', '5', '-1', 'x', '9'.repeat(16)])])
  if (rng.chance(0.1)) params.query.push(['offset', rng.pick(['0', '12', 'x', String(AHEAD)])])
  if (rng.chance(0.12)) {
    const token = rng.pick(['', 'garbage', 'a.b', `${rng.bytes(20).toString('base64url')}.${rng.bytes(32).toString('base64url')}`, 'eyJ2IjoxfQ.Zm9v'])
    if (rng.chance(0.5)) params.query.push(['resume', token])
    else params.headers['x-ws-resume'] = token === '' ? 'x' : token
    if (rng.chance(0.5)) params.query.push(['offset', rng.pick(['0', '1', 'x'])])
    if (rng.chance(0.6)) params.query.push(['sent', rng.pick(['0', '3', 'x', '-1'])])
  }
  return params
}

const TYPES = ['echo', 'add', 'join', 'leave', 'outline', 'mirror', 'crash']

/** A request with an id of every shape: small, string, huge, not a number or string at all. */
function request (rng: Rng): string {
  const id = rng.weighted<() => unknown>([
    [3, () => rng.int(0, 1e6)],
    [3, () => `c${rng.int(1, 999)}`],
    [1, () => 'i'.repeat(rng.weighted([[3, rng.int(100, 2000)], [1, rng.int(FEED_LIMIT - 60, FEED_LIMIT + 200)]] as const))],
    [1, () => rng.pick([1e308, -1e308, 2 ** 64, -1, 1.5, 0, -0, 5e-324, Number.MAX_SAFE_INTEGER + 2])],
    [2, () => rng.pick([{}, [], true, false, null, { id: 1 }, ['c1']])],
    [1, () => randomString(rng, 20)]
  ])()
  const type = rng.weighted([[6, rng.pick(TYPES)], [1, rng.pick(['nope', 'ECHO', 'request', 'response', 'ack', 'welcome', 'message'])]] as const)
  const data = rng.weighted<() => unknown>([
    [4, () => type === 'add' ? { a: rng.int(-9, 9), b: rng.int(0, 9) } : type === 'echo' ? { text: randomString(rng, 20) } : type === 'join' || type === 'leave' ? { room: rng.pick(['r1', 'r2', 'feed']) } : randomString(rng, 8)],
    [2, () => randomJson(rng, 2)],
    [1, () => ({ a: 'x', b: null })]
  ])()
  return JSON.stringify({ type, id, data })
}

/** An answer to a request that is not this client's: unknown, malformed ids, errors without a code, oversized. */
function response (rng: Rng): string {
  return rng.weighted<() => string>([
    [3, () => JSON.stringify({ type: 'response', id: rng.pick([`s:${rng.int(10_000_000, 99_999_999)}`, 's:0', '', 'x', 's:-1', 'c1']), data: randomJson(rng, 2) })],
    [2, () => JSON.stringify({ type: 'response', id: rng.pick([7, null, {}, [], true, 1.5]), data: 1 })],
    [1, () => '{"type":"response","data":1}'],
    [2, () => JSON.stringify({ type: 'response', id: `s:${rng.int(0, 99)}`, error: rng.pick([{ message: 'no code' }, { code: 7 }, null, [], 'DECLINED', { code: null }, {}]) })],
    [1, () => JSON.stringify({ type: 'response', id: `s:${rng.int(0, 99)}`, error: { code: randomString(rng, 8), message: randomString(rng, 8) } })],
    // over the route's limit (1009), or just under it
    [1, () => JSON.stringify({ type: 'response', id: 's:1', data: 'x'.repeat(rng.pick([FEED_LIMIT + rng.int(0, 500), FEED_LIMIT - 100 - rng.int(0, 500)])) })],
    [1, () => '{"type":"response"' + rng.pick(['', '}', ',', ',"id":"s:1"', ',"id":"s:1",}', '{'])]
  ])()
}

/** Heartbeat-like frames (never counted when shorter than 128 bytes), and look-alikes that are counted. */
function heartbeatLike (rng: Rng): string {
  const prefix = rng.pick(['{"type":"ping"', '{"type":"pong"'])
  return rng.weighted<() => string>([
    [3, () => `${prefix}}`],
    [1, () => `${prefix},"ts":${rng.int(0, 2 ** 40)}}`],
    // the boundary: 127, 128 and 129 bytes
    [3, () => { const n = rng.pick([126, 127, 128, 129, 200]); return prefix + ' '.repeat(n - prefix.length) }],
    [1, () => prefix + randomString(rng, 10)],
    [1, () => rng.pick(['{ "type":"ping"}', '{"type": "pong"}', '{"type":"pinG"}', '{"type":"pin'])]
  ])()
}

/** Answers to a request whose id is known only when the case runs, in a frame of fixed length. */
function answer (rng: Rng, to: 'own' | 'other'): Template {
  const key = rng.bytes(4)
  const tail = rng.weighted([
    [3, `,"data":${JSON.stringify(randomJson(rng, 2))}`],
    [1, ''],
    [2, `,"error":{"code":${JSON.stringify(rng.pick(['DECLINED', 'UNKNOWN_TYPE', 'INTERNAL', randomString(rng, 6)]))},"message":"no"}`],
    [1, rng.pick([',"error":{"message":"no code"}', ',"error":null', ',"error":"DECLINED"'])]
  ] as const)
  return {
    to,
    frame: (id: string) => {
      // a JSON string and the spaces that keep the frame's length
      const quoted = JSON.stringify(id)
      const text = `{"type":"response","id":${quoted}${' '.repeat(Math.max(0, ID_WIDTH - quoted.length))}${tail}}`
      return encodeFrame({ opcode: OP.TEXT, payload: Buffer.from(text), maskKey: key })
    }
  }
}

/** A frame with one byte changed: broken JSON, another type, or text that is not UTF-8. */
function garbled (rng: Rng): Buffer {
  const text = Buffer.from(request(rng))
  const at = rng.int(0, text.length - 1)
  text[at] = rng.weighted([[4, rng.int(0x20, 0x7e)], [1, rng.int(0x80, 0xff)], [1, 0x22]] as const)
  return text
}

/** One batch of frames: the kinds above mixed with the ordinary ones. */
export function batch (rng: Rng, ask: boolean, min: number, max: number): Batch {
  const parts: Part[] = []
  let frames = 0
  const push = (...buffers: Buffer[]): void => { parts.push(...buffers); frames += buffers.length }
  for (let n = rng.int(min, max); n > 0; n--) {
    rng.weighted<() => void>([
      [4, () => push(...messageFrames(rng, Buffer.from(request(rng)), false))],
      [3, () => push(...messageFrames(rng, Buffer.from(randomMessage(rng)), false))],
      [3, () => push(...messageFrames(rng, Buffer.from(response(rng)), false))],
      [3, () => push(...messageFrames(rng, Buffer.from(heartbeatLike(rng)), rng.chance(0.15)))],
      [ask ? 3 : 0, () => { parts.push(answer(rng, 'own')); frames++ }],
      [2, () => { parts.push(answer(rng, 'other')); frames++ }],
      // the same frame again, byte for byte
      [2, () => { const last = parts.at(-1); if (last !== undefined) { parts.push(last); frames++ } }],
      [1, () => push(...messageFrames(rng, garbled(rng), false))],
      [1, () => push(...messageFrames(rng, rng.bytes(rng.int(0, 40)), true))],
      [1, () => push(masked(rng, { opcode: rng.pick([OP.PING, OP.PONG]), payload: rng.bytes(rng.int(0, 20)) }))],
      [0.3, () => push(randomFrame(rng))],
      [0.2, () => push(...violation(rng))]
    ])()
  }
  const end = rng.weighted([[6, 'close'], [3, 'open'], [1, 'destroy']] as const)
  if (end === 'close') push(closeFrame(rng))
  if (end === 'destroy' && rng.chance(0.5)) {
    // a frame cut short: never a message
    const last = masked(rng, { opcode: OP.TEXT, payload: Buffer.from(request(rng)) })
    push(last.subarray(0, rng.int(1, last.length - 1)))
  }
  return { parts, end, frames }
}

function attempt (rng: Rng, kind: AttemptKind): Attempt {
  const garbage = kind === 'sentGarbage'
    ? rng.pick([undefined, '', 'x', '-1', '1.5', '1e2', ' 3', '9'.repeat(16), '0x10'])
    : kind === 'offsetGarbage'
      ? rng.pick(['', 'x', '-3', '1.5', '9'.repeat(16)])
      : kind === 'tokenGarbage' ? rng.pick(['tamper', 'tamper', '', 'x.y', 'eyJ2IjoxfQ.Zm9v', rng.bytes(30).toString('base64url')]) : undefined
  return {
    kind,
    // `sent` is only read with v=2: the kinds about it ask for it
    params: protocolParams(rng, kind === 'sentGarbage' || kind === 'sentBelow' || kind === 'sentAbove' || rng.chance(0.7)),
    inHeaders: rng.chance(0.25),
    delta: kind === 'sentAbove' ? 1_048_577 + rng.int(0, 10) : kind === 'sentBelow' ? rng.int(1, 3) : rng.weighted([[6, 0], [2, rng.int(1, 5)], [1, 1_048_576]] as const),
    garbage,
    twice: rng.chance(0.05),
    fromWelcome: rng.chance(0.3),
    oldToken: rng.chance(0.6)
  }
}

export function generateNumbered (rng: Rng): NumberedCase {
  const route = rng.pick(RESUME_ROUTES)
  const params = firstParams(rng)
  const ask = rng.chance(0.5)
  const first = batch(rng, ask, 1, 12)
  const attempts: Attempt[] = []
  if (rng.chance(0.6)) {
    for (let n = rng.weighted([[3, 0], [2, 1], [1, 2]] as const); n > 0; n--) attempts.push(attempt(rng, rng.pick(['sentGarbage', 'offsetGarbage', 'tokenGarbage'])))
    const main = rng.weighted([[5, ['good']], [2, ['silent', 'good']], [1, ['sentBelow', 'reuse']], [1, ['sentAbove', 'reuse']], [1, ['offsetAhead', 'reuse']]] as const)
    for (const kind of main) attempts.push(attempt(rng, kind))
  }
  const then = batch(rng, ask, 1, 6)
  const label = `numbered ${route} ${attempts.map(a => a.kind).join(',') || 'no resume'}`
  return { kind: 'numbered', route, params, ask, first, attempts, then, reuse: rng.chance(0.3), frames: first.frames + then.frames, label }
}
