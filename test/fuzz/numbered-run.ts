import { RawClient, OP, closePayload, type ServerFrame } from './raw-client.ts'
import { chunked } from './cases.ts'
import { BROADCAST, ROUTES, expectedFor, freshState, normalise, requestId, type ConnState, type Expected } from './model.ts'
import { AHEAD, Tokens, protocolOf, resumeOutcome, type Params, type ResumeOutcome, type SessionModel } from './resume-model.ts'
import type { Attempt, Batch, NumberedCase, ResumeRoute } from './numbered-cases.ts'
import type { Departures } from './departures.ts'
import type { Rng } from './prng.ts'

/*
 * Runs a protocol 2 case (test/fuzz/numbered-cases.ts) on raw connections and checks it
 * against the models: every welcome (version, resumed, resumeFailed, received, replayed),
 * every answer and error frame (in envelopes where protocol 2 puts them), the close code
 * and disconnect reason, the rooms a connection leaves, how the server's request was
 * settled, and every `{"type":"ack","received":N}`: never decreasing, never beyond the
 * frames counted so far, never more than the threshold apart, and once quiet equal to the
 * count. Acks are taken wherever they fall among the other frames.
 */

export interface Mismatch { case: number, kind: string, label: string, route: string, problem: string, expected?: unknown, actual?: unknown }

export interface NumberedEnv {
  port: number
  departures: Departures
  /** How the server's `hello` requests were settled, by clientId (test/fuzz/app.ts). */
  asked: Map<string, string>
  /** The id of a request of the server to another client. */
  otherId: () => string
  localAddress: string
}

/** Close codes after which a client is told to come back: the server's requests wait for it. */
const RESUMABLE = new Set([1001, 1006, 1011, 1012, 1013])
const ACK = /^\{"type":"ack","received":(\d+)\}$/
const OFFSET = /^\{"type":"message","offset":(\d+),/

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

class Failed extends Error {
  constructor (readonly problem: string, readonly expected?: unknown, readonly actual?: unknown) {
    super(problem)
  }
}

function check (ok: boolean, problem: string, expected?: unknown, actual?: unknown): void {
  if (!ok) throw new Failed(problem, expected, actual)
}

function same (actual: unknown, expected: unknown, problem: string): void {
  check(JSON.stringify(actual) === JSON.stringify(expected), problem, expected, actual)
}

function textOf (frame: ServerFrame): string {
  return frame.opcode === OP.BINARY ? `<binary ${frame.payload.length}>` : frame.payload.toString()
}

/** A path with the query written as the case says (every byte percent-encoded, now and then). */
function pathOf (route: string, query: Array<[string, string]>, encode: boolean): string {
  const value = (v: string): string => encode ? [...Buffer.from(v)].map(b => `%${b.toString(16).padStart(2, '0')}`).join('') : encodeURIComponent(v)
  return `${route}?${query.map(([k, v]) => `${k}=${value(v)}`).join('&')}`
}

interface Welcome { type: string, v: number, clientId: string, token: string, offset: number, resumed: boolean, resumeFailed?: string, received?: number, replayed?: number }

/** What the session is to the client: its count, tokens, offsets and the frames of it the log holds. */
interface Client {
  id: string
  route: ResumeRoute
  state: ConnState
  session: SessionModel
  tokens: Tokens
  /** The token of the latest welcome of the session, and the one its latest resume used. */
  token: string
  used: string | undefined
  /** The last offset received, and the first welcome's. */
  offset: number
  firstOffset: number
  /** The session's frames that came with an offset (the broadcasts left out), by offset. */
  logged: Map<number, string>
  /** Those the server logged for it that never arrived (it dropped the socket first): a resume replays them. */
  unseen: string[]
  own: string | undefined
}

export async function runNumbered (env: NumberedEnv, c: NumberedCase, id: string, index: number, rng: Rng): Promise<Mismatch | undefined> {
  try {
    await run(env, c, id, rng)
    return undefined
  } catch (err) {
    if (!(err instanceof Failed)) throw err
    return { case: index, kind: c.kind, label: c.label, route: c.route, problem: err.problem, expected: err.expected, actual: err.actual }
  }
}

async function run (env: NumberedEnv, c: NumberedCase, id: string, rng: Rng): Promise<void> {
  const { numbered, threshold } = protocolOf(c.params)
  const replay = ROUTES[c.route].replay
  // a first connection asks for no resume that can succeed
  const first = resumeOutcome(c.route, c.params, { saved: false, received: 0 }, new Tokens())
  const query: Array<[string, string]> = [['id', id], ...(c.ask ? [['ask', '1']] as Array<[string, string]> : []), ...c.params.query]
  const conn = await open(env, pathOf(c.route, query, c.params.encode), c.params.headers)
  const welcome = await welcomeOf(conn)
  same(welcomeKey(welcome), { v: numbered ? 2 : 1, clientId: id, resumed: false, resumeFailed: first.failed, received: numbered ? 0 : undefined, replayed: undefined }, 'the first welcome')
  const tokens = new Tokens()
  tokens.issued(welcome.token)
  const client: Client = {
    id,
    route: c.route,
    state: { ...freshState(c.route, numbered), welcome: false },
    session: { saved: false, received: 0 },
    tokens,
    token: welcome.token,
    used: undefined,
    offset: welcome.offset,
    firstOffset: welcome.offset,
    logged: new Map(),
    unseen: [],
    own: undefined
  }
  const prefix: string[] = []
  if (c.ask) {
    check(await conn.until(() => conn.frames.some(f => requestId(textOf(f)) !== undefined), 2000), 'the server\'s request never came')
    client.own = requestId(textOf(conn.frames.find(f => requestId(textOf(f)) !== undefined)!))
    client.state.pending.add(client.own!)
    prefix.push(numbered && replay ? 'env request hello' : 'request hello')
  }
  await batch(env, client, conn, c.first, numbered ? 0 : undefined, threshold, 1, prefix, rng)

  let k = 0
  for (const attempt of c.attempts) {
    const outcome = await resume(env, client, attempt, k++)
    if (outcome === undefined) continue
    if (outcome.kind === 'silent') continue
    // the connection it opened takes the rest of the case
    await batch(env, client, outcome.conn, c.then, outcome.numbered ? outcome.base : undefined, outcome.threshold, outcome.from, [], rng)
    if (c.reuse) {
      const again = { ...attempt, kind: 'reuse' as const, params: { query: [['v', '2']] as Array<[string, string]>, headers: {}, encode: false }, delta: 0 }
      const last = await resume(env, client, again, k++)
      if (last !== undefined) await goodbye(env, client, last.conn, client.id)
    }
    break
  }
}

async function open (env: NumberedEnv, path: string, headers: Record<string, string>): Promise<RawClient> {
  try {
    return await RawClient.open(env.port, path, { localAddress: env.localAddress, headers })
  } catch (err) {
    throw new Failed(`upgrade failed: ${(err as Error).message}`, 101, path)
  }
}

async function welcomeOf (conn: RawClient): Promise<Welcome> {
  check(await conn.until(() => conn.frames.length > 0, 2000), 'no welcome', 'welcome', conn.closeCode)
  const text = textOf(conn.frames[0])
  check(text.startsWith('{"type":"welcome"'), 'the first frame is not the welcome', 'welcome', text.slice(0, 200))
  return JSON.parse(text) as Welcome
}

function welcomeKey (w: Welcome): object {
  return { v: w.v, clientId: w.clientId, resumed: w.resumed, resumeFailed: w.resumeFailed, received: w.received, replayed: w.replayed === undefined ? undefined : 'n' }
}

/**
 * Writes a batch on an open connection and checks what came back. `base` is the session's
 * count before it (undefined on a protocol 1 connection), `from` the first frame after the
 * welcome and the replay.
 */
async function batch (env: NumberedEnv, client: Client, conn: RawClient, b: Batch, base: number | undefined, threshold: number, from: number, prefix: string[], rng: Rng): Promise<void> {
  const bytes = Buffer.concat(b.parts.map(part => Buffer.isBuffer(part) ? part : part.frame(part.to === 'own' ? client.own ?? 's:0' : env.otherId())))
  const state = client.state
  state.numbered = base !== undefined
  const expected = expectedFor(client.route, bytes, state)
  const outputs = [...prefix, ...expected.outputs]
  const chunks = chunked(rng, bytes)
  for (const chunk of chunks) {
    conn.write(chunk)
    if (chunks.length > 1 && rng.chance(0.2)) await new Promise(resolve => setImmediate(resolve))
  }
  const count = (base ?? 0) + expected.counted
  let open = false
  if (b.end === 'destroy') {
    await hangUp(conn)
  } else if (expected.close !== undefined) {
    check(await conn.until(() => conn.closeCode !== undefined, 4000), 'no close frame (the server hung or dropped the connection)', expected.close, conn.closed ? 'socket ended' : 'still open')
  } else {
    open = true
    const answered = (): boolean => conn.frames.slice(from).filter(f => !BROADCAST.test(textOf(f)) && !ACK.test(textOf(f))).length >= outputs.length
    await conn.until(answered, 2000)
    // a quiet moment: every counted frame acknowledged
    if (base !== undefined && expected.counted > 0) await conn.until(() => lastAck(conn, from) === count, 1500)
    await sleep(10)
    await hangUp(conn)
  }
  conn.destroy()
  const info = await env.departures.of(client.id)
  const frames = conn.frames.slice(from)
  for (const f of conn.frames) {
    const offset = OFFSET.exec(textOf(f))
    if (offset !== null) client.offset = Number(offset[1])
  }
  for (const f of frames) {
    const text = textOf(f)
    const offset = OFFSET.exec(text)
    if (offset !== null && !BROADCAST.test(text)) client.logged.set(Number(offset[1]), normalise(client.route, [text])[0])
  }
  const logged = outputs.filter(o => o.startsWith('env '))
  const seen = frames.filter(f => OFFSET.test(textOf(f)) && !BROADCAST.test(textOf(f))).length
  if (b.end === 'destroy') client.unseen = logged.slice(seen)
  else {
    same(normalise(client.route, frames.map(textOf).filter(t => !BROADCAST.test(t) && !ACK.test(t))), outputs, 'answers')
    check(conn.closeCode === expected.close, 'close code', expected.close, conn.closeCode)
  }
  checkAcks(frames, base, threshold, expected, b.end === 'destroy' ? 'cut' : open ? 'quiet' : 'closed')
  check(info !== undefined, 'the server never noticed the connection ended')
  const reasons = b.end === 'destroy' && expected.close !== undefined ? [expected.reason, 'network_error'] : [expected.reason]
  check(reasons.includes(info!.disconnectReason), 'disconnect reason', reasons, info!.disconnectReason)
  same([...info!.rooms].sort(), [...state.rooms].sort(), 'the rooms it left')
  // the session as the server saved it
  client.session.saved = true
  client.session.received = count
  const code = info!.disconnectReason === 'network_error' ? 1006 : expected.close!
  if (!RESUMABLE.has(code)) {
    for (let n = state.pending.size; n > 0; n--) state.settled.push('err FST_WS_REQUEST_CLOSED')
    state.pending.clear()
  }
  same(env.asked.get(client.id), state.settled[0], 'how the server\'s request was settled')
  check(state.settled.length <= 1, 'one request settled once', 1, state.settled)
  return afterEnd(client, conn, expected)
}

/**
 * Goes without a close frame, but with a FIN rather than a reset: the server reads every
 * byte written before it (a reset can make the kernel drop what it had not read yet, and
 * then the count is not the model's to know; the protocol 2 bystander covers that loss).
 */
async function hangUp (conn: RawClient): Promise<void> {
  conn.socket.end()
  await conn.until(() => conn.closed, 2000)
  conn.destroy()
}

/** A resumed connection that ended before the client was heard from gives its token back. */
function afterEnd (client: Client, conn: RawClient & { resumedWith?: string, welcomeToken?: string }, expected: Pick<Expected, 'heard'>): void {
  if (conn.resumedWith !== undefined && !expected.heard) client.tokens.release(conn.resumedWith, conn.welcomeToken!)
}

function lastAck (conn: RawClient, from: number): number | undefined {
  let last: number | undefined
  for (const f of conn.frames.slice(from)) {
    const m = ACK.exec(textOf(f))
    if (m !== null) last = Number(m[1])
  }
  return last
}

/** Every ack: cumulative, within what was counted when it came, at most the threshold apart; at the end the count. */
function checkAcks (frames: ServerFrame[], base: number | undefined, threshold: number, expected: Expected, end: 'quiet' | 'closed' | 'cut'): void {
  const acks = frames.flatMap(f => { const m = ACK.exec(textOf(f)); return m === null ? [] : [{ n: Number(m[1]), written: f.written }] })
  if (base === undefined) {
    same(acks.map(a => a.n), [], 'no acks on protocol 1')
    return
  }
  let previous = base
  for (const ack of acks) {
    const counted = base + expected.countedEnds.filter(e => e <= ack.written).length
    check(ack.n >= previous, 'an ack went down', `>= ${previous}`, ack.n)
    check(ack.n <= counted, 'an ack beyond the frames counted when it came', `<= ${counted}`, ack.n)
    check(ack.n - previous <= threshold, 'frames over the threshold waited for an ack', `<= ${threshold} after ${previous}`, ack.n)
    previous = ack.n
  }
  const count = base + expected.counted
  if (end === 'quiet') same(previous, count, 'after a quiet moment the ack is the count')
  if (end === 'closed') check(count - previous < threshold, 'frames over the threshold left without an ack', `> ${count - threshold}`, previous)
}

interface Resumed { kind: Attempt['kind'], conn: RawClient, numbered: boolean, base: number, threshold: number, from: number }

/** One resume attempt: its welcome and replay checked; a connection that resumed is returned open, others are closed. */
async function resume (env: NumberedEnv, client: Client, a: Attempt, k: number): Promise<Resumed | undefined> {
  const { numbered, threshold } = protocolOf(a.params)
  const had = client.session.received
  const token = a.kind === 'tokenGarbage'
    ? a.garbage === 'tamper' ? tamper(client.token) : a.garbage!
    : a.kind === 'reuse' ? client.used ?? client.token : client.token
  const offset = a.kind === 'offsetGarbage' ? a.garbage! : a.kind === 'offsetAhead' ? String(AHEAD + a.delta) : String(a.fromWelcome ? client.firstOffset : client.offset)
  const sent = a.kind === 'sentGarbage' ? a.garbage : a.kind === 'sentBelow' ? String(had - a.delta) : String(had + a.delta)
  const resumeParams: Array<[string, string | undefined]> = [['resume', token], ['offset', offset], ['sent', sent]]
  const params: Params = { query: [...a.params.query], headers: { ...a.params.headers }, encode: a.params.encode }
  for (const [key, value] of resumeParams) {
    if (value === undefined) continue
    if (a.inHeaders) params.headers[`x-ws-${key}`] = value
    else params.query.push([key, value])
  }
  if (a.twice) params.query.push(['resume', token])
  const outcome: ResumeOutcome = resumeOutcome(client.route, params, client.session, client.tokens)
  const aid = `${client.id}.a${k}`
  env.departures.forget(client.id)
  const conn = await open(env, pathOf(client.route, [['id', aid], ...params.query], params.encode), params.headers) as RawClient & { resumedWith?: string, welcomeToken?: string }
  const welcome = await welcomeOf(conn)
  const replay = ROUTES[client.route].replay
  same(welcomeKey(welcome), {
    v: numbered ? 2 : 1,
    clientId: outcome.resumed ? client.id : aid,
    resumed: outcome.resumed,
    resumeFailed: outcome.failed,
    received: numbered ? outcome.resumed ? had : 0 : undefined,
    replayed: outcome.resumed && replay ? 'n' : undefined
  }, `the welcome of a resume (${a.kind}: ${JSON.stringify(params)})`)
  if (outcome.used !== undefined) client.used = outcome.used
  if (!outcome.resumed) {
    await goodbye(env, client, conn, aid)
    return undefined
  }
  // the route's rooms are joined on every connection, beside the session's
  client.state.rooms.add('feed')
  client.tokens.issued(welcome.token)
  conn.resumedWith = outcome.used
  conn.welcomeToken = welcome.token
  // the replay: the session's logged frames after the offset, in order, each once
  const n = welcome.replayed ?? 0
  if (n > 0) check(await conn.until(() => conn.frames.length > n, 3000), 'the replay did not come', n, conn.frames.length - 1)
  const replayed = conn.frames.slice(1, 1 + n).map(textOf)
  const offsets = replayed.map(t => Number(OFFSET.exec(t)?.[1] ?? NaN))
  check(offsets.every((o, i) => o > (i === 0 ? outcome.offset! : offsets[i - 1])), 'replayed offsets go up from the resume\'s', outcome.offset, offsets)
  // written after the last frame that arrived: their offsets are above every one received
  const expected = [...[...client.logged.entries()].filter(([o]) => o > outcome.offset!).sort((x, y) => x[0] - y[0]).map(([, v]) => v), ...client.unseen]
  same(normalise(client.route, replayed.filter(t => !BROADCAST.test(t))), expected, 'the replayed frames of the session')
  for (const [i, t] of replayed.entries()) if (!BROADCAST.test(t)) client.logged.set(offsets[i], normalise(client.route, [t])[0])
  client.unseen = []
  if (a.kind === 'silent') {
    // gone before a word: the welcome may never have arrived, so the token it used is good again
    conn.destroy()
    const info = await env.departures.of(client.id)
    check(info?.disconnectReason === 'network_error', 'disconnect reason', 'network_error', info?.disconnectReason)
    afterEnd(client, conn, { heard: false })
    client.session.saved = true
    // a protocol 1 connection leaves no count in the session
    if (!numbered) client.session.received = 0
    if (!a.oldToken) client.token = welcome.token
    return { kind: a.kind, conn, numbered, base: had, threshold, from: 1 + n }
  }
  client.token = welcome.token
  client.offset = n > 0 ? offsets[n - 1] : welcome.offset
  return { kind: a.kind, conn, numbered, base: had, threshold, from: 1 + n }
}

/** Closes a connection with a close frame and waits until the server let it go. */
async function goodbye (env: NumberedEnv, client: Client, conn: RawClient, clientId: string): Promise<void> {
  conn.send({ opcode: OP.CLOSE, payload: closePayload(1000) })
  await conn.until(() => conn.closeCode !== undefined, 2000)
  conn.destroy()
  const info = await env.departures.of(clientId)
  check(info?.disconnectReason === 'client_close', 'disconnect reason', 'client_close', info?.disconnectReason)
  if (clientId === client.id) {
    // the session's own connection, closed with 1000: the server's requests to it fail
    client.session.saved = true
    for (let n = client.state.pending.size; n > 0; n--) client.state.settled.push('err FST_WS_REQUEST_CLOSED')
    client.state.pending.clear()
  }
}

/** The token with one character of its payload changed: the signature no longer matches. */
function tamper (token: string): string {
  const at = Math.min(3, token.indexOf('.') - 1)
  return token.slice(0, at) + (token[at] === 'A' ? 'B' : 'A') + token.slice(at + 1)
}
