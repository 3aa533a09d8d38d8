import { test, type Test as Tap } from 'tap'
import v8 from 'node:v8'
import vm from 'node:vm'
import { randomBytes, randomInt } from 'node:crypto'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import WebSocket from 'ws'
import { urlOf } from './helpers.ts'
import { Departures } from './fuzz/departures.ts'
import { Rng, caseRng } from './fuzz/prng.ts'
import { RawClient, Refused, OP, closePayload, encodeFrame, exchange } from './fuzz/raw-client.ts'
import { generate, type CaseKind, type FuzzCase } from './fuzz/cases.ts'
import { BROADCAST, errorKey, expectedFor, normalise } from './fuzz/model.ts'
import { APP_RATE, HEARTBEAT, MAX_CONNECTIONS, MAX_PER_IP, MAX_VIOLATIONS, asked, buildFuzzApp } from './fuzz/app.ts'
import { generateNumbered } from './fuzz/numbered-cases.ts'
import { runNumbered, type Mismatch } from './fuzz/numbered-run.ts'
import { NumberedClient } from './fuzz/numbered-client.ts'

/*
 * Bad input of every kind against a realistic app (test/fuzz/app.ts), with well-behaved
 * clients on the same server throughout. Each generated case is one raw connection
 * (test/fuzz/raw-client.ts: RFC 6455 by hand); what the server must answer and which close
 * code it must send is worked out independently by test/fuzz/model.ts and compared.
 * Protocol 2 cases (test/fuzz/numbered-cases.ts, run by test/fuzz/numbered-run.ts) are a
 * connection and the resumes that follow it, their acks and welcomes checked against
 * test/fuzz/resume-model.ts as well.
 * Replay a run with FUZZ_SEED=<seed> (case n of a seed is the same whatever the order the
 * cases run in); FUZZ_ITERATIONS raises the count, FUZZ_CASES=3,17 runs only those cases.
 *
 * The server runs in this process (tap gives each test file its own): the heap is measured
 * with gc made available at runtime, and every fuzz connection is watched through a WeakRef,
 * so a single leaked connection fails the run, not only a large leak.
 */

const SEED = process.env.FUZZ_SEED === undefined || process.env.FUZZ_SEED === '' ? randomInt(2 ** 31) : Number(process.env.FUZZ_SEED)
const ITERATIONS = Number(process.env.FUZZ_ITERATIONS ?? 1400)
const WORKERS = 6
/** FUZZ_CASES=12,40: run only these cases of the seed (to look at a mismatch). */
const ONLY = process.env.FUZZ_CASES === undefined ? undefined : new Set(process.env.FUZZ_CASES.split(',').map(Number))
const WEIGHTS: ReadonlyArray<readonly [number, CaseKind | 'numbered']> = [
  [30, 'messages'], [8, 'utf8'], [20, 'frames'], [10, 'bytes'], [6, 'oversize'],
  [12, 'protocol'], [5, 'fragments'], [1, 'fragflood'], [8, 'abrupt'], [40, 'numbered']
]

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

/** `global.gc`, made available without --expose-gc when the runner did not pass it. */
function getGc (): () => void {
  const existing = (globalThis as { gc?: () => void }).gc
  if (typeof existing === 'function') return existing
  v8.setFlagsFromString('--expose-gc')
  return vm.runInNewContext('gc') as () => void
}

async function collect (gc: () => void): Promise<number> {
  for (let i = 0; i < 4; i++) {
    gc()
    await new Promise(resolve => setImmediate(resolve))
  }
  return process.memoryUsage().heapUsed
}

/** Runs one generated case on a raw connection and compares what the server did with the model. */
async function runCase (port: number, departures: Departures, fuzzCase: FuzzCase, index: number, localAddress: string, rng: Rng, closes: Record<string, number>): Promise<Mismatch | undefined> {
  const id = `fz${SEED}-${index}`
  const fail = (problem: string, expected?: unknown, actual?: unknown): Mismatch => ({ case: index, kind: fuzzCase.kind, label: fuzzCase.label, route: fuzzCase.route, problem, expected, actual })
  let client: RawClient
  try {
    client = await RawClient.open(port, `${fuzzCase.route}?id=${id}`, { localAddress })
  } catch (err) {
    return fail(`upgrade failed: ${(err as Error).message}`)
  }
  const expected = expectedFor(fuzzCase.route, Buffer.concat(fuzzCase.chunks))
  for (const chunk of fuzzCase.chunks) {
    client.write(chunk)
    if (fuzzCase.chunks.length > 1 && rng.chance(0.2)) await new Promise(resolve => setImmediate(resolve))
  }
  if (fuzzCase.destroy) {
    await new Promise<void>(resolve => client.socket.write(Buffer.alloc(0), () => resolve()))
    client.destroy()
    const info = await departures.of(id)
    if (info === undefined) return fail('the server never noticed the dropped connection')
    const allowed = expected.close === undefined ? ['network_error'] : [expected.reason, 'network_error']
    if (!allowed.includes(info.disconnectReason)) return fail('disconnect reason', allowed, info.disconnectReason)
    return undefined
  }
  if (expected.close !== undefined) {
    if (!await client.until(() => client.closeCode !== undefined, 4000)) {
      client.destroy()
      return fail('no close frame (the server hung or dropped the connection)', expected.close, client.closed ? 'socket ended' : 'still open')
    }
  } else {
    await client.until(() => client.texts(BROADCAST).length >= expected.outputs.length, 2000)
    await sleep(10)
  }
  client.destroy()
  const seen = `${fuzzCase.kind} ${client.closeCode ?? 'no close frame'}`
  closes[seen] = (closes[seen] ?? 0) + 1
  const outputs = normalise(fuzzCase.route, client.texts(BROADCAST))
  const info = await departures.of(id)
  if (client.closeCode !== expected.close) return fail('close code', expected.close, client.closeCode)
  if (JSON.stringify(outputs) !== JSON.stringify(expected.outputs)) return fail('answers', expected.outputs, outputs)
  if (info === undefined) return fail('the server never noticed the connection ended')
  if (info.disconnectReason !== expected.reason) return fail('disconnect reason', expected.reason, info.disconnectReason)
  return undefined
}

/** A ws client on /app in room feed: checks the broadcast sequence and its own requests. */
class GoodClient {
  ws!: WebSocket
  last = 0
  problems: string[] = []
  pending = new Map<number, number>()
  answered = 0
  #next = 1

  static async open (url: string): Promise<GoodClient> {
    const good = new GoodClient()
    good.ws = new WebSocket(url)
    good.ws.on('message', data => good.#message(data.toString()))
    good.ws.on('error', err => good.problems.push(`socket error ${err.message}`))
    good.ws.once('close', code => { if (code !== 1000) good.problems.push(`closed with ${code}`) })
    await new Promise((resolve, reject) => { good.ws.once('open', resolve); good.ws.once('error', reject) })
    return good
  }

  request (): void {
    const id = this.#next++
    this.pending.set(id, id + 1)
    this.ws.send(JSON.stringify({ type: 'add', id, data: { a: id, b: 1 } }))
  }

  #message (text: string): void {
    const frame = JSON.parse(text) as { seq?: number, type?: string, id?: number, data?: unknown }
    if (frame.seq !== undefined) {
      if (this.last !== 0 && frame.seq !== this.last + 1) this.problems.push(`seq ${frame.seq} after ${this.last}`)
      this.last = frame.seq
    } else if (frame.type === 'add.result' && this.pending.get(frame.id!) === frame.data) {
      this.pending.delete(frame.id!)
      this.answered++
    } else {
      this.problems.push(`unexpected frame ${text.slice(0, 200)}`)
    }
  }
}

/** A ws client on the resumable /feed route that drops its connection now and then and resumes. */
class Resumer {
  ws!: WebSocket
  last = 0
  offset = 0
  token = ''
  resumes = 0
  replayed = 0
  problems: string[] = []
  #url: string

  constructor (url: string) {
    this.#url = url
  }

  async connect (resume: boolean): Promise<void> {
    const url = resume ? `${this.#url}&resume=${encodeURIComponent(this.token)}&offset=${this.offset}` : this.#url
    const ws = this.ws = new WebSocket(url)
    const welcomed = new Promise<void>((resolve, reject) => {
      ws.once('close', code => reject(new Error(`closed with ${code} before the welcome`)))
      ws.on('message', data => {
        const frame = JSON.parse(data.toString()) as { type: string, token?: string, offset?: number, resumed?: boolean, resumeFailed?: string, replayed?: number, data?: { seq?: number } }
        if (frame.type === 'welcome') {
          this.token = frame.token!
          this.offset = frame.offset!
          if (resume && frame.resumed !== true) this.problems.push(`resume failed: ${String(frame.resumeFailed)}`)
          if (resume) this.replayed += frame.replayed ?? 0
          resolve()
          return
        }
        if (frame.offset !== undefined) this.offset = frame.offset
        const seq = frame.data?.seq
        if (seq === undefined) {
          this.problems.push(`unexpected frame ${data.toString().slice(0, 200)}`)
          return
        }
        if (this.last !== 0 && seq !== this.last + 1) this.problems.push(`seq ${seq} after ${this.last}`)
        this.last = seq
      })
    })
    ws.on('error', err => this.problems.push(`socket error ${err.message}`))
    await welcomed
  }

  /** Drops the connection without a close frame, waits, and resumes. */
  async bounce (awayMs: number): Promise<void> {
    const closed = new Promise(resolve => this.ws.once('close', resolve))
    this.ws.terminate()
    await closed
    await sleep(awayMs)
    this.resumes++
    await this.connect(true)
  }
}

function countResources (): number {
  return process.getActiveResourcesInfo().filter(r => r === 'TCPSocketWrap').length
}

test(`fuzz: thousands of bad frames and upgrades against a realistic app; the good clients miss nothing (FUZZ_SEED=${SEED})`, async (t) => {
  t.comment(`FUZZ_SEED=${SEED} FUZZ_ITERATIONS=${ITERATIONS}`)
  const started = Date.now()
  const crashes: string[] = []
  const onCrash = (err: unknown): void => { crashes.push(String((err as Error)?.stack ?? err)) }
  process.on('uncaughtException', onCrash)
  process.on('unhandledRejection', onCrash)
  t.after(() => {
    process.off('uncaughtException', onCrash)
    process.off('unhandledRejection', onCrash)
  })
  const gc = getGc()

  const app = await buildFuzzApp(t)
  const port = (app.server.address() as AddressInfo).port
  const departures = new Departures(app)
  const errors: string[] = []
  app.wsManager.on('error', err => errors.push(err.message))
  const refs: Array<WeakRef<object>> = []
  app.wsManager.on('connect', conn => { if (conn.id.startsWith('fz')) refs.push(new WeakRef(conn), new WeakRef(conn.socket)) })

  // warm up the code paths, then the baseline
  for (let i = 0; i < 20; i++) {
    const c = await RawClient.open(port, `/app?id=warm${i}`)
    c.send({ opcode: OP.TEXT, payload: Buffer.from('{"type":"add","id":1,"data":{"a":1,"b":2}}') })
    c.send({ opcode: OP.CLOSE, payload: closePayload(1000) })
    await c.ended
  }
  const resourcesBefore = countResources()
  const baseline = await collect(gc)

  const good = await GoodClient.open(urlOf(app, '/app?id=good'))
  const resumer = new Resumer(urlOf(app, '/feed?id=resumer'))
  await resumer.connect(false)
  // protocol 2: numbered requests and answers to the server's, across its own drops
  const numbered = new NumberedClient(urlOf(app, '/rapp?id=numbered&v=2&w=8'))
  await numbered.connect(false)
  const serverAsks = { sent: 0, settled: 0, problems: [] as string[] }
  let seq = 0
  const broadcastErrors: string[] = []
  const broadcaster = setInterval(() => {
    app.wsManager.broadcast({ seq: ++seq }, { room: 'feed' }).catch((err: Error) => broadcastErrors.push(err.message))
  }, 5)
  const requester = setInterval(() => { good.request(); numbered.request() }, 15)
  const asker = setInterval(() => {
    const conn = app.wsManager.getConnection('numbered')
    if (conn === undefined || !conn.isOpen) return
    const n = ++serverAsks.sent
    conn.request('confirm', { n }).then(answer => {
      serverAsks.settled++
      if (answer !== 2 * n) serverAsks.problems.push(`request ${n} answered ${JSON.stringify(answer)}`)
    }, (err: Error) => { serverAsks.settled++; serverAsks.problems.push(`request ${n}: ${err.message}`) })
  }, 40)
  const bouncing = { on: true }
  t.after(() => {
    clearInterval(broadcaster)
    clearInterval(requester)
    clearInterval(asker)
    bouncing.on = false
  })
  const bounce = async (client: { bounce: (ms: number) => Promise<void> }, stream: number): Promise<void> => {
    const rng = caseRng(SEED, stream)
    while (bouncing.on) {
      await sleep(rng.int(400, 1200))
      if (bouncing.on) await client.bounce(rng.int(5, 150))
    }
  }
  const bouncer = Promise.all([bounce(resumer, -1), bounce(numbered, -3)])

  // phase 1: generated cases on WORKERS connections at a time, each worker from its own address
  const mismatches: Mismatch[] = []
  const kinds: Record<string, number> = {}
  const closes: Record<string, number> = {}
  let frames = 0
  let next = 0
  const plans: Record<string, number> = {}
  const worker = async (w: number): Promise<void> => {
    const env = { port, departures, asked, otherId: () => numbered.lastRequestId, localAddress: `127.0.1.${w + 1}` }
    while (next < ITERATIONS) {
      const index = next++
      if (ONLY !== undefined && !ONLY.has(index)) continue
      const rng = caseRng(SEED, index)
      const kind = rng.weighted(WEIGHTS)
      if (kind === 'numbered') {
        const numberedCase = generateNumbered(rng)
        kinds.numbered = (kinds.numbered ?? 0) + 1
        const plan = numberedCase.label.split(' ').slice(2).join(' ')
        plans[plan] = (plans[plan] ?? 0) + 1
        frames += numberedCase.frames
        const problem = await runNumbered(env, numberedCase, `fz${SEED}-${index}`, index, rng)
        if (problem !== undefined) mismatches.push(problem)
        continue
      }
      const fuzzCase = generate(rng, kind)
      kinds[fuzzCase.kind] = (kinds[fuzzCase.kind] ?? 0) + 1
      frames += fuzzCase.frames
      const problem = await runCase(port, departures, fuzzCase, index, `127.0.1.${w + 1}`, rng, closes)
      if (problem !== undefined) mismatches.push(problem)
    }
  }
  const special = (async () => {
    await neverFinished(t, port, departures)
    await deepNesting(t, port)
    await rateLimits(t, port, departures)
  })()
  const garbage = garbageUpgrades(t, port, SEED)
  const took = (name: string, p: Promise<void>): Promise<string> => p.then(() => `${name} ${Date.now() - started} ms`)
  const times = await Promise.all([took('cases', Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w))).then(() => {})), took('special', special), took('upgrades', garbage)])
  t.comment(`done at: ${times.join(', ')}`)
  t.comment(`phase 1: ${ITERATIONS} cases (${JSON.stringify(kinds)}), ${frames} frames, in ${Date.now() - started} ms`)
  t.comment(`close codes by kind: ${JSON.stringify(Object.fromEntries(Object.entries(closes).sort()))}`)
  t.comment(`protocol 2 resumes: ${JSON.stringify(Object.fromEntries(Object.entries(plans).sort()))}`)
  if (mismatches.length > 0) t.comment(`replay with FUZZ_SEED=${SEED}; first mismatch: ${JSON.stringify(mismatches[0]).slice(0, 2000)}`)
  t.same(mismatches.slice(0, 3), [], `every case did what the model says (${mismatches.length} did not)`)

  // phase 2: connection floods over the limits (the resuming client stays put: a full instance would refuse its resume)
  bouncing.on = false
  await bouncer
  await floods(t, port, app)
  t.equal(app.wsManager.getConnectionCount(), 3, 'after the floods only the good clients are left')

  // the good clients got everything
  clearInterval(broadcaster)
  clearInterval(requester)
  clearInterval(asker)
  const lastSeq = seq
  const deadline = Date.now() + 3000
  const done = (): boolean => good.last >= lastSeq && resumer.last >= lastSeq && good.pending.size === 0 &&
    numbered.last >= lastSeq && numbered.pending.size === 0 && numbered.kept.length === 0 && serverAsks.settled === serverAsks.sent
  while (!done() && Date.now() < deadline) await sleep(10)
  t.equal(good.last, lastSeq, `the good client got every number up to ${lastSeq}`)
  t.equal(resumer.last, lastSeq, 'so did the resuming client')
  t.same(good.problems, [], 'in order, once each, and nothing else')
  t.same(resumer.problems, [], 'the resuming client too, across its resumes')
  t.ok(resumer.resumes > 0, `it resumed ${resumer.resumes} times, ${resumer.replayed} messages replayed`)
  t.equal(good.pending.size, 0, `every request of the good client was answered (${good.answered})`)
  t.equal(numbered.last, lastSeq, 'the protocol 2 client got every number too')
  t.same(numbered.problems, [], 'in order, once each, every ack and welcome within what it sent')
  t.ok(numbered.resumes > 0, `it resumed ${numbered.resumes} times`)
  t.equal(numbered.pending.size, 0, `each of its requests was answered once (${numbered.answered})`)
  t.equal(numbered.kept.length, 0, `every frame it sent was acknowledged (${numbered.sent})`)
  t.same(serverAsks.problems, [], `the server's requests to it were answered, across its drops (${serverAsks.settled} of ${serverAsks.sent}, ${numbered.served} answers sent)`)
  t.equal(serverAsks.settled, serverAsks.sent, 'none is left waiting')
  t.same(broadcastErrors, [], 'no broadcast failed')
  t.same(app.wsManager.getRooms().sort(), ['feed'], 'only the good clients\' room is left')
  t.same(app.wsManager.getActiveConnections().sort(), ['good', 'numbered', 'resumer'])

  good.ws.close(1000)
  resumer.ws.close(1000)
  numbered.ws.close(1000)
  const until = Date.now() + 3000
  while (app.wsManager.getConnectionCount() > 0 && Date.now() < until) await sleep(10)
  t.equal(app.wsManager.getConnectionCount(), 0, 'the registry is empty once they left')
  t.same(app.wsManager.getRooms(), [], 'and so are the rooms')
  while (countResources() > resourcesBefore && Date.now() < until + 2000) await sleep(10)
  t.ok(countResources() <= resourcesBefore, `no socket left open (${countResources()} TCP handles, ${resourcesBefore} before)`)

  const after = await collect(gc)
  const alive = refs.filter(r => r.deref() !== undefined).length
  t.comment(`heap: ${(baseline / 2 ** 20).toFixed(1)} MB before, ${(after / 2 ** 20).toFixed(1)} MB after; ${alive} of ${refs.length} fuzz connections and sockets still reachable`)
  t.ok(after < 2 * baseline + 20 * 2 ** 20, 'the heap is back near its baseline')
  const reachable = refs.map(r => r.deref() as { id?: string } | undefined).flatMap(x => typeof x?.id === 'string' ? [x.id] : [])
  t.ok(alive <= 4, `the fuzz connections were garbage-collected (${alive} of ${refs.length} still reachable${alive > 4 ? `: ${reachable.slice(0, 10).join(', ')}` : ''})`)

  const unexpected = errors.filter(m => m !== 'expected crash' && m !== 'Maximum call stack size exceeded')
  t.same(unexpected, [], `the manager reported only the expected errors (${errors.length})`)
  t.same(crashes, [], 'no uncaught exception or unhandled rejection')
  t.comment(`whole run: ${Date.now() - started} ms`)
})

/** Fragmented messages that never finish, from a peer that answers no ping: the heartbeat ends them. */
async function neverFinished (t: Tap, port: number, departures: Departures): Promise<void> {
  const clients = await Promise.all([1, 2, 3].map(async i => {
    const c = await RawClient.open(port, `/app?id=forever${i}`, { localAddress: `127.0.3.${i}` })
    c.send({ opcode: OP.TEXT, fin: false, payload: Buffer.from('{"type":"echo",') })
    if (i === 2) c.send({ opcode: OP.CONT, fin: false, payload: Buffer.from('"data":') })
    return c
  }))
  const infos = await Promise.all([1, 2, 3].map(i => departures.of(`forever${i}`, HEARTBEAT.timeout + HEARTBEAT.interval * 2 + 2000)))
  t.same(infos.map(i => i?.disconnectReason), ['heartbeat_timeout', 'heartbeat_timeout', 'heartbeat_timeout'], 'a message that never finishes is cut by the heartbeat')
  await Promise.all(clients.map(c => c.until(() => c.closed, 2000)))
  t.same(clients.map(c => [c.closeCode, c.closed]), [[undefined, true], [undefined, true], [undefined, true]], 'terminated, no close frame')
}

/** 100 000 levels of nesting, parsed, validated against a recursive schema, echoed back. */
async function deepNesting (t: Tap, port: number): Promise<void> {
  const deep = '['.repeat(100_000) + ']'.repeat(100_000)
  const deepObject = '{"a":'.repeat(40_000) + '1' + '}'.repeat(40_000)
  const c = await RawClient.open(port, '/app?id=deep', { localAddress: '127.0.3.9' })
  const sent = [
    [deep, errorKey('INVALID_MESSAGE', undefined)],
    [`{"type":"mirror","id":"m","data":${deep}}`, errorKey('INTERNAL', 'm')],
    [`{"type":"outline","id":"o","data":${deep}}`, errorKey('VALIDATION_FAILED', 'o')],
    [`{"type":"echo","id":"e","data":${deepObject}}`, errorKey('VALIDATION_FAILED', 'e')],
    [`{"type":"mirror","id":"n","data":${deepObject}}`, errorKey('INTERNAL', 'n')],
    [`{"type":"${'x'.repeat(200_000)}","id":"u"}`, errorKey('UNKNOWN_TYPE', 'u')],
    ['{"type":"add","id":"after","data":{"a":1,"b":2}}', '{"type":"add.result","id":"after","data":3}']
  ]
  for (const [text] of sent) c.send({ opcode: OP.TEXT, payload: Buffer.from(text) })
  await c.until(() => c.texts(BROADCAST).length >= sent.length, 5000)
  t.same(normalise('/app', c.texts(BROADCAST)), sent.map(s => s[1]), 'deep nesting gets error frames; the connection and the process stay up')
  c.send({ opcode: OP.CLOSE, payload: closePayload(1000) })
  await c.until(() => c.closeCode !== undefined, 2000)
  t.equal(c.closeCode, 1000)
  c.destroy()
}

/** Floods of valid messages: RATE_LIMITED frames, then 4429; a per-type limit only drops. */
async function rateLimits (t: Tap, port: number, departures: Departures): Promise<void> {
  const flood = await RawClient.open(port, '/app?id=flood', { localAddress: '127.0.3.10' })
  const add = (id: number): Buffer => encodeFrame({ opcode: OP.TEXT, payload: Buffer.from(`{"type":"add","id":${id},"data":{"a":${id},"b":0}}`) })
  flood.write(Buffer.concat(Array.from({ length: APP_RATE.burst + 50 }, (_, i) => add(i))))
  await flood.until(() => flood.closeCode !== undefined, 3000)
  flood.destroy()
  const texts = flood.texts(BROADCAST)
  const limited = texts.filter(x => x.includes('"RATE_LIMITED"'))
  t.equal(flood.closeCode, 4429, 'a flood over the rate limit is closed with 4429')
  t.equal(limited.length, MAX_VIOLATIONS + 1, 'after maxViolations RATE_LIMITED frames and one more')
  t.ok(limited.every(x => (JSON.parse(x) as { retryAfterMs: number }).retryAfterMs > 0), 'each with retryAfterMs')
  const answered = texts.filter(x => x.includes('add.result')).length
  // refills while the flood arrives can let a few more through, never the whole flood
  t.ok(answered >= APP_RATE.burst && answered + limited.length < APP_RATE.burst + 50, `the burst was answered (${answered})`)
  t.equal((await departures.of('flood'))?.disconnectReason, 'rate_limited')

  const slow = await RawClient.open(port, '/app?id=slow', { localAddress: '127.0.3.10' })
  for (let i = 0; i < 4; i++) slow.send({ opcode: OP.TEXT, payload: Buffer.from(`{"type":"slow","id":${i}}`) })
  await slow.until(() => slow.texts(BROADCAST).length >= 4, 2000)
  t.same(normalise('/app', slow.texts(BROADCAST)).sort(), [errorKey('RATE_LIMITED', 2), errorKey('RATE_LIMITED', 3), '{"type":"slow.result","id":0,"data":"done"}', '{"type":"slow.result","id":1,"data":"done"}'], 'a per-type limit drops with an error frame and keeps the connection')
  slow.send({ opcode: OP.CLOSE, payload: closePayload(1000) })
  await slow.until(() => slow.closeCode !== undefined, 2000)
  t.equal(slow.closeCode, 1000)
  slow.destroy()
}

/** Upgrade requests with garbage: answered with an HTTP error (or a WebSocket that works), never a 5xx, never a hang. */
async function garbageUpgrades (t: Tap, port: number, seed: number): Promise<void> {
  const valid: Array<[string, string]> = [
    ['Host', `127.0.0.1:${port}`], ['Upgrade', 'websocket'], ['Connection', 'Upgrade'],
    ['Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ=='], ['Sec-WebSocket-Version', '13']
  ]
  const request = (line: string, headers: Array<[string, string]>): Buffer => Buffer.from(`${line}\r\n${headers.map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`, 'latin1')
  const without = (name: string): Array<[string, string]> => valid.filter(([k]) => k !== name)
  const replace = (name: string, value: string): Array<[string, string]> => [...without(name), [name, value]]
  const fixed: Array<[string, Buffer]> = [
    ['no key', request('GET /app HTTP/1.1', without('Sec-WebSocket-Key'))],
    ['short key', request('GET /app HTTP/1.1', replace('Sec-WebSocket-Key', 'abc'))],
    ['version 12', request('GET /app HTTP/1.1', replace('Sec-WebSocket-Version', '12'))],
    ['version x', request('GET /app HTTP/1.1', replace('Sec-WebSocket-Version', 'x'))],
    ['upgrade h2c', request('GET /app HTTP/1.1', replace('Upgrade', 'h2c'))],
    ['no upgrade', request('GET /app HTTP/1.1', without('Upgrade'))],
    ['extensions', request('GET /app HTTP/1.1', [...valid, ['Sec-WebSocket-Extensions', 'permessage-deflate; ;=;client_max_window_bits=99,,']])],
    ['protocols', request('GET /app HTTP/1.1', [...valid, ['Sec-WebSocket-Protocol', 'a,,b, "c"']])],
    ['huge header', request('GET /app HTTP/1.1', [...valid, ['X-Big', 'y'.repeat(20_000)]])],
    ['control char', request('GET /app HTTP/1.1', [...valid, ['X-Bad', 'a\u0001b']])],
    ['post', request('POST /app HTTP/1.1', valid)],
    ['unknown path', request('GET /nope HTTP/1.1', valid)],
    ['no host', request('GET /app HTTP/1.1', without('Host'))],
    ['http/1.0', request('GET /app HTTP/1.0', valid)],
    ['bad request line', request('GET  /app  HTTP/9.9', valid)],
    ['garbage', Buffer.from('\u0016\u0003\u0001\u0002\u0000\u0001\u0000\u0001\u00fc\u0003\u0003garbage\r\n\r\n', 'latin1')],
    ['bad query', request('GET /app?id=%E0%A4%A&id=&&=&user[]=1 HTTP/1.1', valid)],
    ['long id', request(`GET /app?id=${'i'.repeat(5000)} HTTP/1.1`, valid)],
    ['resume garbage', request('GET /feed?resume=garbage&offset=abc HTTP/1.1', valid)],
    ['resume twice', request('GET /feed?resume=a&resume=b&offset=1&offset=2 HTTP/1.1', valid)],
    ['resume header', request('GET /feed HTTP/1.1', [...valid, ['x-ws-resume', 'z'.repeat(5000)], ['x-ws-offset', '-1']])],
    ['resume offset', request('GET /feed?resume=eyJ2IjoxfQ.Zm9v&offset=99999999999999999999 HTTP/1.1', valid)],
    // protocol 2: the client's count of frames sent, malformed in every way
    ['resume numbered garbage', request('GET /feed?v=2&resume=garbage&offset=1&sent=abc HTTP/1.1', valid)],
    ['resume numbered negative', request('GET /feed?v=2&v=2&resume=x&offset=1&sent=-5 HTTP/1.1', valid)],
    ['resume numbered header', request('GET /feed HTTP/1.1', [...valid, ['x-ws-version', '2'], ['x-ws-resume', 'zzz'], ['x-ws-sent', '1e999']])],
    ['resume numbered huge', request('GET /feed?v=2&resume=eyJ2IjoxfQ.Zm9v&offset=0&sent=99999999999999999999 HTTP/1.1', valid)]
  ]
  const rng = caseRng(seed, -2)
  const random: Array<[string, Buffer]> = []
  for (let i = 0; i < 150; i++) {
    const headers = valid.map(([k, v]) => [k, v] as [string, string])
    for (let m = rng.int(1, 4); m > 0; m--) {
      const at = rng.int(0, headers.length - 1)
      const mutation = rng.int(0, 6)
      if (mutation === 0) headers.splice(at, 1)
      else if (mutation === 1) headers.push([headers[at][0], rng.bytes(rng.int(0, 30)).toString('latin1').replace(/[\r\n]/g, '')])
      else if (mutation === 2) headers[at] = [headers[at][0].toUpperCase(), ` ${headers[at][1]}\t`]
      else if (mutation === 3) headers[at] = [headers[at][0], rng.bytes(rng.int(0, 40)).toString('base64')]
      else if (mutation === 4) headers.splice(at, 0, [rng.bytes(rng.int(1, 10)).toString('hex'), rng.bytes(rng.int(0, 10)).toString('latin1').replace(/[\r\n]/g, '')])
      else if (mutation === 5) headers[at] = [headers[at][0] + rng.pick([' ', ':', '\u0000', 'é']), headers[at][1]]
      else headers.push(['Sec-WebSocket-Key', rng.pick(['', '==', 'dGhlIHNhbXBsZSBub25jZQ', rng.bytes(16).toString('base64')])])
    }
    const path = rng.pick(['/app', '/feed', '/app?id=x', '/feed?resume=' + rng.bytes(rng.int(0, 300)).toString('base64url'), '/' + rng.bytes(5).toString('hex'),
      `/feed?v=${rng.pick(['2', '1', '', '02', rng.bytes(3).toString('hex')])}&sent=${rng.pick(['0', '-1', 'x', String(rng.int(0, 2 ** 31))])}&resume=${rng.bytes(rng.int(0, 100)).toString('base64url')}`])
    random.push([`random ${i}`, request(`GET ${path} HTTP/1.1`, headers)])
  }
  const statuses: Record<string, number> = {}
  const bad: string[] = []
  let resumes = 0
  const all = [...fixed, ...random]
  for (let k = 0; k < all.length; k++) {
    const [name, bytes] = all[k]
    let outcome
    try {
      // an address each: upgrades that did succeed may linger a moment, under maxConnectionsPerIp
      outcome = await exchange(port, bytes, { localAddress: `127.0.4.${1 + (k % 250)}` })
    } catch (err) {
      bad.push(`${name}: ${(err as Error).message}`)
      continue
    }
    const { socket, status, rest } = outcome
    statuses[status] = (statuses[status] ?? 0) + 1
    if (status >= 500) bad.push(`${name}: HTTP ${status}`)
    if (status === 101) {
      if (name.startsWith('resume')) {
        // the welcome says why the resume failed; a fresh session, never a crash
        const frames = await firstFrame(socket, rest)
        if (frames.includes('"resumeFailed":"invalid"')) resumes++
        else bad.push(`${name}: welcome ${frames.slice(0, 200)}`)
      }
      socket.write(encodeFrame({ opcode: OP.CLOSE, payload: closePayload(1000) }))
    }
    socket.destroy()
  }
  // handshakes cut short: half a request, or a whole one and gone before the answer
  const request101 = (id: string): Buffer => request(`GET /app?id=${id} HTTP/1.1`, [...valid.slice(0, 3), ['Sec-WebSocket-Key', randomBytes(16).toString('base64')], valid[4]])
  await Promise.all(Array.from({ length: 40 }, (_, i) => new Promise<void>(resolve => {
    const bytes = request101(`cut-${i}`)
    const socket = net.connect({ port, host: '127.0.0.1', localAddress: `127.0.9.${1 + (i % 8)}` })
    socket.on('error', () => {})
    socket.once('close', () => resolve())
    socket.once('connect', () => {
      if (i % 2 === 0) socket.write(bytes.subarray(0, 1 + (i * 7) % (bytes.length - 1)), () => socket.destroy())
      else socket.write(bytes, () => socket.destroy())
    })
  })))
  t.comment(`garbage upgrades: ${fixed.length + random.length}, statuses ${JSON.stringify(statuses)}; 40 handshakes cut short`)
  t.same(bad, [], 'every garbage upgrade got an answer below 500 (or a working WebSocket)')
  t.equal(resumes, 8, 'garbage resume parameters (protocol 2\'s `sent` too) give a fresh session with resumeFailed: invalid')
}

async function firstFrame (socket: net.Socket, rest: Buffer): Promise<string> {
  let got = rest
  const enough = (): boolean => got.length >= 2 && got.length >= 2 + ((got[1] & 0x7f) < 126 ? got[1] & 0x7f : 2 + got.readUInt16BE(2))
  if (!enough()) {
    await new Promise<void>(resolve => {
      const timer = setTimeout(resolve, 2000)
      socket.on('data', chunk => {
        got = Buffer.concat([got, chunk])
        if (enough()) { clearTimeout(timer); resolve() }
      })
    })
  }
  const length = got[1] & 0x7f
  return length < 126 ? got.subarray(2, 2 + length).toString() : got.subarray(4, 4 + got.readUInt16BE(2)).toString()
}

/** Floods of connections: per address (HTTP 429) and instance-wide (HTTP 503), with and without racing. */
async function floods (t: Tap, port: number, app: FastifyInstance): Promise<void> {
  const open = async (address: string, id: string): Promise<RawClient | Refused> => {
    try {
      return await RawClient.open(port, `/app?id=${id}`, { localAddress: address })
    } catch (err) {
      if (err instanceof Refused) return err
      throw err
    }
  }
  const held: RawClient[] = []
  const outcomes = (list: Array<RawClient | Refused>): string[] => list.map(x => x instanceof Refused ? String(x.status) : 'open')

  // one address, one after another: the limit, then 429 with retry-after
  const sequential: Array<RawClient | Refused> = []
  for (let i = 0; i < MAX_PER_IP + 3; i++) sequential.push(await open('127.0.5.1', `ip-seq-${i}`))
  t.same(outcomes(sequential), [...Array(MAX_PER_IP).fill('open'), '429', '429', '429'], 'maxConnectionsPerIp: the next upgrades from that address get HTTP 429')
  t.match((sequential.at(-1) as Refused).head, /retry-after: 5/i)

  // one address, all at once
  const burst = await Promise.all(Array.from({ length: 12 }, (_, i) => open('127.0.5.2', `ip-burst-${i}`)))
  await sleep(50)
  const fromBurst = [...app.wsManager.connections()].filter(c => c.ip === '127.0.5.2').length
  t.ok(fromBurst <= MAX_PER_IP, `a burst from one address registers at most ${MAX_PER_IP} (${fromBurst}; ${outcomes(burst).join(',')})`)
  for (const x of [...sequential, ...burst]) if (x instanceof RawClient) held.push(x)

  // fill the instance from many addresses, then one more: 503 with retry-after
  let n = 0
  while (app.wsManager.getConnectionCount() < MAX_CONNECTIONS) {
    const x = await open(`127.0.6.${1 + Math.floor(n / MAX_PER_IP)}`, `fill-${n}`)
    n++
    if (x instanceof Refused) break
    held.push(x)
  }
  t.equal(app.wsManager.getConnectionCount(), MAX_CONNECTIONS, 'the instance is full')
  const over = await open('127.0.7.1', 'one-too-many')
  t.ok(over instanceof Refused && over.status === 503 && /retry-after: 5/i.test(over.head), 'maxConnections: the next upgrade gets HTTP 503 with retry-after')
  const rush = await Promise.all(Array.from({ length: 20 }, (_, i) => open(`127.0.7.${2 + (i % 4)}`, `rush-${i}`)))
  await sleep(50)
  t.ok(app.wsManager.getConnectionCount() <= MAX_CONNECTIONS, `a rush on a full instance registers nothing (${outcomes(rush).join(',')})`)
  for (const x of rush) if (x instanceof RawClient) held.push(x)

  // leave: half with a close frame, half abruptly
  held.forEach((c, i) => {
    if (i % 2 === 0) c.send({ opcode: OP.CLOSE, payload: closePayload(1000) })
    else c.destroy()
  })
  const deadline = Date.now() + 3000
  while (app.wsManager.getConnectionCount() > 2 && Date.now() < deadline) await sleep(10)
  for (const c of held) c.destroy()
}
