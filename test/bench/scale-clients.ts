import net from 'node:net'
import { performance } from 'node:perf_hooks'
import { backoffDelay, DEFAULT_RECONNECT } from '../../lib/client/backoff.ts'

/*
 * A client process of `npm run bench:scale` (scale.ts): up to ~17,000 minimal WebSocket
 * clients over plain TCP sockets (one process may open 20,000 files here). A client does
 * the least a real one must: the upgrade, reading the server's frames, answering pings
 * (protocol pings with a pong; Socket.IO's "2" with "3", after joining the namespace with
 * "40"), answering a close frame. So the process costs little CPU next to the servers it
 * loads (a ws client, or socket.io-client, per connection would cost several times more).
 *
 * `resume` clients speak the resume protocol (version 1) of a `config.ws.reconnect` route:
 * they keep the welcome's token and the last offset, and after a close that allows it (1001,
 * 1006, 1011, 1012; 1013 waits longer) reconnect to the same port with the backoff of our
 * client (lib/client/backoff.ts: full jitter, 500 ms first cap, doubling per failed attempt),
 * passing `x-ws-resume` and `x-ws-offset`. Each message carries a sequence number; every
 * client checks that it gets each one once, in order, resumes included.
 */

export type ClientKind = 'ws' | 'socket.io' | 'resume'

export type ScaleClientCommand =
  | { cmd: 'connect', ports: number[], kind: ClientKind, count: number, concurrency: number, timeoutMs: number }
  | { cmd: 'seen', seq: number }
  | { cmd: 'state' }
  | { cmd: 'pings' }
  | { cmd: 'mark' }
  | { cmd: 'route', from: number, to: number }
  | { cmd: 'report', finalSeq: number }
  | { cmd: 'close' }

export interface ConnectResult { ms: number, opened: number, failed: number, errors: Record<string, number> }
export interface Seen { count: number, last: number }

/** `BENCH_TRACE=1`: the first anomalies of each client process (a hole or a repeat) go to stderr with their context. */
const TRACE = process.env.BENCH_TRACE === '1'
let traced = 0
/** What the clients lived through since the last `mark`. */
export interface RestartState {
  open: number
  total: number
  /** Connections the server closed with a code that asks for a reconnect; the close codes of all that ended (1006: no close frame, a heartbeat timeout say). */
  moved: number
  codes: Record<string, number>
  /** Of those, the ones back with `resumed: true`; the ones back with a fresh session, by reason. */
  resumed: number
  failed: Record<string, number>
  /** Upgrades answered with an HTTP status instead of 101, by status; TCP errors (the port not taken yet), by code. */
  refused: Record<string, number>
  errors: Record<string, number>
  /** When the last moved client got its welcome (performance.timeOrigin + now, ms), and the longest a client was away. */
  lastBackAt: number
  /** When the last moved client saw its connection end. */
  lastAwayAt: number
  longestAway: number
  attempts: number
}
/** `missed`: holes in the sequence, for good (never replayed); `behind`: what the clients still lack of the last broadcast, now. */
export interface Report { missed: number, behind: number, duplicated: number, clientsMissing: number, clientsDuplicated: number }

const RECONNECT_CODES = new Set([1001, 1006, 1011, 1012])
const OPEN_TIMEOUT = 20_000
const now = (): number => performance.timeOrigin + performance.now()

const KEY = 'dGhlIHNhbXBsZSBub25jZQ=='
const SEQ = Buffer.from('"seq":')

// frames from a client are masked; a zero key leaves the payload as it is
function frame (opcode: number, payload: Buffer): Buffer {
  const head = Buffer.from([0x80 | opcode, 0x80 | payload.length, 0, 0, 0, 0])
  return Buffer.concat([head, payload])
}
const SIO_JOIN = frame(1, Buffer.from('40'))
const SIO_PONG = frame(1, Buffer.from('3'))

/** The sequence number in `…"seq":123…`, read without parsing the JSON. */
function seqOf (payload: Buffer): number {
  let at = payload.indexOf(SEQ)
  if (at < 0) return -1
  at += SEQ.length
  let n = 0
  for (let c = payload[at]; c >= 48 && c <= 57; c = payload[++at]) n = n * 10 + c - 48
  return n
}

const clients: Client[] = []
/** A port that moved (`--surge`: the new instance listens on a new port): what a load balancer would do. */
const routes = new Map<number, number>()
const seen = new Map<number, Seen>()
let reconnecting = false
let state: RestartState = freshState()
/** Heartbeat pings answered (protocol pings, Socket.IO's "2"), since the start: the idle window counts what it saw. */
let pings = 0

function freshState (): RestartState {
  return { open: 0, total: 0, moved: 0, codes: {}, resumed: 0, failed: {}, refused: {}, errors: {}, lastBackAt: 0, lastAwayAt: 0, longestAway: 0, attempts: 0 }
}

function count (into: Record<string, number>, key: string): void {
  into[key] = (into[key] ?? 0) + 1
}

function arrived (seq: number, at: number): void {
  const s = seen.get(seq)
  if (s === undefined) seen.set(seq, { count: 1, last: at })
  else {
    s.count++
    s.last = at
  }
}

class Client {
  readonly kind: ClientKind
  port: number
  socket: net.Socket | undefined
  #pending: Buffer | undefined
  #upgraded = false
  #closeCode = 1006
  #status = 0
  #error = ''
  #timer: NodeJS.Timeout | undefined
  #onOpen: ((ok: boolean) => void) | undefined
  open = false
  openedAt = 0
  // resume protocol
  token = ''
  offset = 0
  #away = false
  #awayAt = 0
  #attempt = 0
  lastSeq = -1
  #welcome: unknown = undefined
  #welcomeAt = 0
  #framesSinceWelcome = 0
  missed = 0
  duplicated = 0

  constructor (kind: ClientKind, port: number) {
    this.kind = kind
    this.port = port
  }

  /** One attempt; resolves true once the client can receive (101, Socket.IO's namespace joined, or the welcome). */
  start (): Promise<boolean> {
    this.#upgraded = false
    this.#pending = undefined
    this.#closeCode = 1006
    this.#status = 0
    this.#error = ''
    this.port = routes.get(this.port) ?? this.port
    const path = this.kind === 'socket.io' ? '/socket.io/?EIO=4&transport=websocket' : '/ws'
    const resume = this.#away && this.token !== '' ? `x-ws-resume: ${this.token}\r\nx-ws-offset: ${this.offset}\r\n` : ''
    const request = `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${this.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n${resume}\r\n`
    const socket = net.connect({ host: '127.0.0.1', port: this.port })
    this.socket = socket
    socket.setNoDelay(true)
    socket.on('connect', () => socket.write(request))
    socket.on('data', chunk => this.#data(socket, chunk))
    socket.on('error', (err: NodeJS.ErrnoException) => { this.#error = err.code ?? 'error' })
    socket.on('close', () => this.#closed(socket))
    this.#timer = setTimeout(() => {
      this.#error = 'open_timeout'
      socket.destroy()
    }, OPEN_TIMEOUT)
    return new Promise(resolve => { this.#onOpen = resolve })
  }

  #opened (): void {
    clearTimeout(this.#timer)
    this.open = true
    this.openedAt = now()
    state.open++
    const done = this.#onOpen
    this.#onOpen = undefined
    done?.(true)
  }

  #data (socket: net.Socket, chunk: Buffer): void {
    let buf = this.#pending === undefined ? chunk : Buffer.concat([this.#pending, chunk])
    this.#pending = undefined
    if (!this.#upgraded) {
      const end = buf.indexOf('\r\n\r\n')
      if (end < 0) {
        this.#pending = buf
        return
      }
      this.#status = Number(buf.toString('latin1', 9, 12))
      if (this.#status !== 101) {
        socket.destroy()
        return
      }
      this.#upgraded = true
      buf = buf.subarray(end + 4)
      if (this.kind === 'ws') this.#opened()
    }
    let at = 0
    while (buf.length - at >= 2) {
      let length = buf[at + 1] & 0x7f
      let head = 2
      if (length === 126) {
        if (buf.length - at < 4) break
        length = buf.readUInt16BE(at + 2)
        head = 4
      } else if (length === 127) {
        if (buf.length - at < 10) break
        length = Number(buf.readBigUInt64BE(at + 2))
        head = 10
      }
      if (buf.length - at < head + length) break
      const opcode = buf[at] & 0x0f
      const payload = buf.subarray(at + head, at + head + length)
      at += head + length
      this.#frame(socket, opcode, payload)
      if (socket.destroyed) return
    }
    if (at < buf.length) this.#pending = Buffer.from(buf.subarray(at))
  }

  #frame (socket: net.Socket, opcode: number, payload: Buffer): void {
    if (opcode === 1) this.#text(socket, payload)
    else if (opcode === 9) {
      pings++
      socket.write(frame(10, payload))
    } else if (opcode === 8) {
      this.#closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005
      socket.end(frame(8, payload.subarray(0, 2)))
    }
  }

  #text (socket: net.Socket, payload: Buffer): void {
    if (this.kind === 'ws') {
      arrived(seqOf(payload), now())
      return
    }
    if (this.kind === 'socket.io') {
      // engine.io packets: 0 open, 2 ping, 4 message (40 namespace joined, 42 event)
      const type = payload[0]
      if (type === 0x32) {
        pings++
        socket.write(SIO_PONG)
      } else if (type === 0x34 && payload[1] === 0x32) arrived(seqOf(payload), now())
      else if (type === 0x34 && payload[1] === 0x30) this.#opened()
      else if (type === 0x30) socket.write(SIO_JOIN)
      return
    }
    const f = JSON.parse(payload.toString()) as { type: string, token?: string, offset?: number, resumed?: boolean, resumeFailed?: string, data?: { seq?: number } }
    if (f.type === 'welcome') {
      if (TRACE) {
        this.#welcome = { offset: f.offset, resumed: f.resumed, failed: f.resumeFailed, replayed: (f as { replayed?: number }).replayed, sentOffset: this.offset, port: this.port }
        this.#welcomeAt = now()
        this.#framesSinceWelcome = 0
      }
      this.token = f.token!
      this.offset = f.offset!
      if (this.#away) {
        this.#away = false
        const at = now()
        if (f.resumed === true) state.resumed++
        else count(state.failed, f.resumeFailed ?? 'none')
        state.lastBackAt = Math.max(state.lastBackAt, at)
        state.longestAway = Math.max(state.longestAway, at - this.#awayAt)
      }
      this.#opened()
    } else if (f.type === 'message') {
      const before = this.offset
      this.offset = f.offset ?? this.offset
      const seq = f.data?.seq ?? -1
      arrived(seq, now())
      if (TRACE && traced < 12 && (seq <= this.lastSeq || (this.lastSeq >= 0 && seq > this.lastSeq + 1))) {
        traced++
        process.stderr.write(`trace ${process.pid}: seq ${seq} after ${this.lastSeq}, offset ${before} -> ${String(f.offset)}, frame ${this.#framesSinceWelcome} after a welcome ${JSON.stringify(this.#welcome)} ${(now() - this.#welcomeAt).toFixed(0)} ms ago\n`)
      }
      this.#framesSinceWelcome++
      if (seq <= this.lastSeq) this.duplicated++
      else if (this.lastSeq >= 0 && seq > this.lastSeq + 1) this.missed += seq - this.lastSeq - 1
      if (seq > this.lastSeq) this.lastSeq = seq
    }
  }

  #closed (socket: net.Socket): void {
    if (socket !== this.socket) return
    clearTimeout(this.#timer)
    this.socket = undefined
    const wasOpen = this.open
    if (this.open) {
      this.open = false
      state.open--
    }
    if (!this.#upgraded) {
      if (this.#status !== 0) count(state.refused, String(this.#status))
      else count(state.errors, this.#error === '' ? 'closed' : this.#error)
    } else if (!wasOpen && this.kind !== 'ws') {
      // upgraded, but gone before the welcome (or Socket.IO's namespace)
      count(state.errors, `before welcome: ${this.#error === '' ? this.#closeCode : this.#error}`)
    }
    const done = this.#onOpen
    this.#onOpen = undefined
    done?.(false)
    if (!reconnecting || this.kind !== 'resume') return
    if (wasOpen) {
      count(state.codes, String(this.#closeCode))
      if (!RECONNECT_CODES.has(this.#closeCode) && this.#closeCode !== 1013) return
      state.moved++
      this.#away = true
      this.#awayAt = now()
      state.lastAwayAt = Math.max(state.lastAwayAt, this.#awayAt)
      // a connection that stayed open for a while starts the count again (as our client does)
      if (this.#awayAt - this.openedAt >= DEFAULT_RECONNECT.resetAfter) this.#attempt = 0
    } else if (!this.#away) return
    const delay = backoffDelay(DEFAULT_RECONNECT, this.#attempt++, Math.random, this.#closeCode === 1013)
    setTimeout(() => {
      state.attempts++
      this.start().catch(() => {})
    }, delay)
  }

  close (): void {
    clearTimeout(this.#timer)
    const socket = this.socket
    this.socket = undefined
    socket?.destroy()
  }
}

async function connect (command: Extract<ScaleClientCommand, { cmd: 'connect' }>): Promise<ConnectResult> {
  const start = now()
  const deadline = start + command.timeoutMs
  const base = clients.length
  let next = 0
  let opened = 0
  let failed = 0
  const before = { ...state.errors, ...Object.fromEntries(Object.entries(state.refused).map(([k, v]) => [`http ${k}`, v])) }
  const worker = async (): Promise<void> => {
    while (next < command.count && now() < deadline) {
      const client = new Client(command.kind, command.ports[(base + next++) % command.ports.length])
      clients.push(client)
      state.total++
      if (await client.start()) opened++
      else failed++
    }
  }
  await Promise.all(Array.from({ length: Math.min(command.concurrency, command.count) }, worker))
  const errors: Record<string, number> = {}
  for (const [k, v] of [...Object.entries(state.errors), ...Object.entries(state.refused).map(([k, v]) => [`http ${k}`, v] as const)]) {
    const d = v - (before[k] ?? 0)
    if (d > 0) errors[k] = d
  }
  if (command.kind === 'resume') reconnecting = true
  return { ms: now() - start, opened, failed, errors }
}

function report (finalSeq: number): Report {
  const out: Report = { missed: 0, behind: 0, duplicated: 0, clientsMissing: 0, clientsDuplicated: 0 }
  for (const c of clients) {
    // what has not come yet: counted as it is now, not added up over the restarts
    const behind = Math.max(0, c.lastSeq >= 0 ? finalSeq - c.lastSeq : finalSeq + 1)
    out.missed += c.missed
    out.behind += behind
    out.duplicated += c.duplicated
    if (c.missed + behind > 0) out.clientsMissing++
    if (c.duplicated > 0) out.clientsDuplicated++
  }
  return out
}

function send (value: unknown): void {
  if (process.connected) process.send!(value)
}

process.on('disconnect', () => process.exit(0))
process.on('message', (command: ScaleClientCommand) => {
  switch (command.cmd) {
    case 'connect':
      connect(command).then(send, err => send({ error: String(err) }))
      break
    case 'seen':
      send(seen.get(command.seq) ?? { count: 0, last: 0 })
      break
    case 'state':
      send(state)
      break
    case 'pings':
      send(pings)
      break
    case 'mark': {
      const { open, total } = state
      state = { ...freshState(), open, total }
      send('marked')
      break
    }
    case 'route':
      routes.set(command.from, command.to)
      send('routed')
      break
    case 'report':
      send(report(command.finalSeq))
      break
    case 'close':
      reconnecting = false
      for (const c of clients) c.close()
      clients.length = 0
      process.send!('closed', () => process.exit(0))
      break
  }
})

send('ready')
