import { performance } from 'node:perf_hooks'
import WebSocket from 'ws'
import { io, type Socket } from 'socket.io-client'

/*
 * The load generator of `npm run bench`: a child process holding the client sockets
 * (ws clients, or socket.io-client for the Socket.IO contenders), driven over IPC by run.ts.
 * It counts what arrives and, when asked, records each message's latency: the receive
 * time minus the sender's timestamp in the message (both processes read the same clock).
 */

export type LoadCommand =
  | { cmd: 'connect', urls: string[], kind: 'ws' | 'socket.io', count: number, concurrency: number, timeoutMs: number }
  | { cmd: 'expect', perClient: number, record: boolean, timeoutMs: number }
  | { cmd: 'pings' }
  | { cmd: 'close' }

export interface ConnectResult { ms: number, opened: number, failed: number, total: number }
export interface ExpectResult { complete: boolean, received: number, expected: number, lastAt: number, p50: number, p99: number, max: number }

interface Client { close (): void }

const clients: Client[] = []
let expected = 0
let received = 0
let record = false
let samples = new Float64Array(0)
let lastAt = 0
let finish: (() => void) | undefined
/** Heartbeat pings answered since the start (ws' protocol pings, engine.io's pings). */
let pings = 0

const now = (): number => performance.timeOrigin + performance.now()

function arrived (ts: number): void {
  const at = now()
  if (record && received < samples.length) samples[received] = at - ts
  received++
  lastAt = at
  if (received === expected) finish?.()
}

const COMMA = 44

/** The timestamp of `{"ts":<number>,…`: read without parsing the whole message. */
function onWsMessage (data: WebSocket.RawData): void {
  const buf = data as Buffer
  arrived(Number(buf.toString('latin1', 6, buf.indexOf(COMMA, 6))))
}

function onPing (): void {
  pings++
}

function onIoMessage (message: { ts: number }): void {
  arrived(message.ts)
}

function openWs (url: string): Promise<Client> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false })
    ws.once('open', () => {
      ws.off('error', reject)
      ws.on('error', () => {})
      ws.on('message', onWsMessage)
      ws.on('ping', onPing)
      resolve({ close: () => ws.terminate() })
    })
    ws.once('error', reject)
  })
}

function openIo (url: string): Promise<Client> {
  return new Promise((resolve, reject) => {
    const socket: Socket = io(url, { transports: ['websocket'], forceNew: true, reconnection: false, timeout: 20_000 })
    socket.once('connect', () => {
      socket.off('connect_error', reject)
      socket.on('m', onIoMessage)
      socket.io.on('ping', onPing)
      resolve({ close: () => socket.disconnect() })
    })
    socket.once('connect_error', reject)
  })
}

async function connect (command: Extract<LoadCommand, { cmd: 'connect' }>): Promise<ConnectResult> {
  const open = command.kind === 'ws' ? openWs : openIo
  const start = now()
  const deadline = start + command.timeoutMs
  const base = clients.length
  let next = 0
  let opened = 0
  let failed = 0
  const worker = async (): Promise<void> => {
    while (next < command.count && now() < deadline) {
      const url = command.urls[(base + next++) % command.urls.length]
      try {
        clients.push(await open(url))
        opened++
      } catch {
        failed++
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(command.concurrency, command.count) }, worker))
  return { ms: now() - start, opened, failed, total: clients.length }
}

async function expect (command: Extract<LoadCommand, { cmd: 'expect' }>): Promise<ExpectResult> {
  expected = clients.length * command.perClient
  received = 0
  record = command.record
  lastAt = 0
  if (record && samples.length < expected) samples = new Float64Array(expected)
  const complete = await new Promise<boolean>(resolve => {
    const timer = setTimeout(() => resolve(false), command.timeoutMs)
    finish = () => {
      clearTimeout(timer)
      resolve(true)
    }
    process.send!('expecting')
  })
  finish = undefined
  const result: ExpectResult = { complete, received, expected, lastAt, p50: NaN, p99: NaN, max: NaN }
  if (record && received > 0) {
    const sorted = samples.subarray(0, Math.min(received, samples.length)).sort()
    result.p50 = sorted[Math.floor(sorted.length * 0.5)]
    result.p99 = sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))]
    result.max = sorted[sorted.length - 1]
  }
  return result
}

process.on('message', (command: LoadCommand) => {
  if (command.cmd === 'connect') {
    connect(command).then(r => process.send!(r), err => process.send!({ error: String(err) }))
  } else if (command.cmd === 'expect') {
    expect(command).then(r => process.send!(r), err => process.send!({ error: String(err) }))
  } else if (command.cmd === 'pings') {
    process.send!(pings)
  } else {
    for (const client of clients) client.close()
    clients.length = 0
    process.send!('closed')
    setTimeout(() => process.exit(0), 200)
  }
})

process.send!('ready')
