import { reconnectAdvice } from '../close-codes.ts'
import { backoffDelay, DEFAULT_BACKOFF, type BackoffOptions } from './backoff.ts'
import { Emitter } from './emitter.ts'
import { ClientError, CLOSED, GAVE_UP, OPEN_TIMEOUT, QUEUE_FULL, SERVER_SILENT } from './errors.ts'
import { fromBase64, isPing, isPong, parseFrame, type WelcomeFrame } from './frames.ts'
import { MessageStream } from './message-stream.ts'
import type { SocketConstructor, SocketLike } from './socket.ts'

/*
 * A WebSocket that comes back: reconnects with backoff and jitter as the close code
 * allows, resumes its session on routes with the resume protocol (token and offset kept
 * from the server's frames), answers and watches the heartbeat, and queues what is sent
 * while it is away. Runs in browsers (global WebSocket) and in Node (pass `ws`).
 */

export type ClientState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed'

/** What may be sent: text as it is, binary as it is, anything else as JSON. */
export type Outgoing<Out> = Out | string | ArrayBuffer | ArrayBufferView

export interface HeartbeatOptions {
  /** Send a `{"type":"ping"}` this often, to measure the latency, in ms (default 25 s). */
  interval: number
  /** Reconnect when the server sent nothing for this long, in ms (default 60 s). */
  timeout: number
}

export interface ClientOptions {
  /** The WebSocket class: default `globalThis.WebSocket`; in Node pass `ws`'s. */
  WebSocket?: SocketConstructor
  protocols?: string | string[]
  /** Give up an attempt that has not opened after this long, in ms (default 10 s). */
  openTimeout?: number
  /** Backoff settings, or false to never reconnect. */
  reconnect?: Partial<BackoffOptions> | false
  /**
   * The application-level heartbeat (the server's `heartbeat.mode: 'message'`), or false.
   * It starts once the server's first ping shows that the server speaks it.
   */
  heartbeat?: Partial<HeartbeatOptions> | false
  /** Sends kept while disconnected (default 100); beyond, `send` throws WS_CLIENT_QUEUE_FULL. */
  maxQueueSize?: number
  /** A connection that stayed open this long resets the backoff, in ms (default 5 s). */
  minUptime?: number
  /** `auto` (default) finds the resume protocol from the server's welcome; `plain` ignores it. */
  protocol?: 'auto' | 'plain'
  /** The random source of the jitter (default Math.random). */
  random?: () => number
}

export interface CloseInfo { code: number, reason: string, willReconnect: boolean }

export interface ClientEvents<In> {
  open: []
  /** On resume-protocol routes, the server's first frame: clientId, token, offset. */
  welcome: [frame: WelcomeFrame]
  message: [data: In]
  close: [info: CloseInfo]
  reconnecting: [info: { attempt: number, delay: number }]
  /** The session came back; `replayed` missed messages follow (they arrive as `message`). */
  resumed: [info: { replayed: number }]
  /** The session could not come back: a fresh one started. Refetch the state you need. */
  resumeFailed: [info: { reason: string }]
  error: [err: Error]
}

export class StabilizerClient<In = unknown, Out = unknown> extends Emitter<ClientEvents<In>> {
  readonly url: string
  #WebSocket: SocketConstructor
  #protocols: string | string[] | undefined
  #openTimeout: number
  #backoff: BackoffOptions | undefined
  #heartbeat: HeartbeatOptions | undefined
  #maxQueueSize: number
  #minUptime: number
  #plain: boolean
  #random: () => number

  #state: ClientState = 'idle'
  #socket: SocketLike | undefined = undefined
  #attempt = 0
  #timer: ReturnType<typeof setTimeout> | undefined = undefined
  #ticker: ReturnType<typeof setInterval> | undefined = undefined
  #openedAt = 0
  #lastReceived = 0
  #pingSentAt = 0
  #lastPing = 0
  #serverPings = false
  #queue: Array<string | ArrayBuffer | ArrayBufferView> = []
  #streams = new Set<MessageStream<In>>()
  #opened: { resolve: () => void, reject: (err: Error) => void } | undefined = undefined
  #opening: Promise<void> | undefined = undefined

  /** The session, on resume-protocol routes. */
  clientId: string | undefined = undefined
  #token: string | undefined = undefined
  #offset = 0
  #resuming = false
  /** Round trip of the last heartbeat, in ms (undefined before the first). */
  latency: number | undefined = undefined

  constructor (url: string, options: ClientOptions = {}) {
    super()
    this.url = url
    const WebSocketClass = options.WebSocket ?? (globalThis as { WebSocket?: SocketConstructor }).WebSocket
    if (WebSocketClass === undefined) throw new TypeError('no WebSocket here: pass one as the WebSocket option (in Node: the ws package)')
    this.#WebSocket = WebSocketClass
    this.#protocols = options.protocols
    this.#openTimeout = options.openTimeout ?? 10_000
    this.#backoff = options.reconnect === false ? undefined : { ...DEFAULT_BACKOFF, ...options.reconnect }
    this.#heartbeat = options.heartbeat === false ? undefined : { interval: 25_000, timeout: 60_000, ...options.heartbeat }
    this.#maxQueueSize = options.maxQueueSize ?? 100
    this.#minUptime = options.minUptime ?? 5000
    this.#plain = options.protocol === 'plain'
    this.#random = options.random ?? Math.random
  }

  get state (): ClientState {
    return this.#state
  }

  /** The offset of the last message received (what a resume asks from). */
  get offset (): number {
    return this.#offset
  }

  /** Sends waiting for the connection. */
  get queued (): number {
    return this.#queue.length
  }

  /** Opens the connection; resolves once it is open, rejects if it never opens (reconnects exhausted or forbidden). */
  async connect (): Promise<void> {
    if (this.#state === 'open') return
    this.#opening ??= new Promise<void>((resolve, reject) => { this.#opened = { resolve, reject } })
    const opening = this.#opening
    if (this.#state === 'idle' || this.#state === 'closed') {
      this.#state = 'connecting'
      this.#attempt = 0
      this.#open()
    }
    await opening
  }

  /** Sends now, or after the reconnect (in order) while disconnected. */
  send (data: Outgoing<Out>): void {
    if (this.#state === 'closed' || this.#state === 'idle') throw new ClientError(CLOSED, `send on a ${this.#state} client`)
    const frame = typeof data === 'string' || data instanceof ArrayBuffer || ArrayBuffer.isView(data) ? data : JSON.stringify(data)
    // a socket that is closing already (its close event to come) is not written to either
    const socket = this.#socket
    if (socket?.readyState === 1) {
      socket.send(frame)
      return
    }
    if (this.#queue.length >= this.#maxQueueSize) throw new ClientError(QUEUE_FULL, `${this.#queue.length} sends are waiting for the connection already (maxQueueSize)`)
    this.#queue.push(frame)
  }

  /** Closes for good: no reconnect; queued sends are dropped. */
  close (code = 1000, reason = ''): void {
    if (this.#state === 'closed' || this.#state === 'idle') return
    const socket = this.#socket
    this.#stop()
    this.#queue = []
    if (socket !== undefined) {
      this.#detach(socket)
      socket.close(code, reason)
    }
    this.#finish({ code, reason, willReconnect: false })
  }

  /** The messages, as they come, until the client closes for good. */
  [Symbol.asyncIterator] (): AsyncIterator<In> {
    const stream = new MessageStream<In>(() => this.#streams.delete(stream))
    if (this.#state === 'closed') stream.end()
    else this.#streams.add(stream)
    return stream
  }

  #open (): void {
    this.#timer = undefined
    let socket: SocketLike
    try {
      socket = new this.#WebSocket(this.#address(), this.#protocols)
    } catch (err) {
      this.emit('error', err as Error)
      this.#lost(1006, 'could not connect')
      return
    }
    this.#socket = socket
    socket.binaryType = 'arraybuffer'
    this.#timer = setTimeout(() => {
      this.emit('error', new ClientError(OPEN_TIMEOUT, `not open after ${this.#openTimeout} ms`))
      this.#abandon(socket, 'open timeout')
    }, this.#openTimeout)
    socket.onopen = () => this.#onOpen()
    socket.onmessage = event => this.#receive(event.data)
    socket.onclose = event => {
      if (socket === this.#socket) this.#lost(event.code, event.reason)
    }
    socket.onerror = () => {}
  }

  /** The URL, with the resume query when there is a session to resume. */
  #address (): string {
    this.#resuming = this.#token !== undefined
    if (!this.#resuming) return this.url
    const url = new URL(this.url)
    url.searchParams.set('resume', this.#token!)
    url.searchParams.set('offset', String(this.#offset))
    return url.toString()
  }

  #onOpen (): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
    this.#state = 'open'
    this.#openedAt = this.#lastReceived = this.#lastPing = Date.now()
    if (this.#heartbeat !== undefined) {
      const { interval, timeout } = this.#heartbeat
      this.#ticker = setInterval(() => this.#tick(), Math.max(5, Math.min(interval, timeout) / 4))
    }
    const queue = this.#queue
    this.#queue = []
    for (const frame of queue) this.#socket!.send(frame)
    this.emit('open')
    this.#opened?.resolve()
    this.#opened = this.#opening = undefined
  }

  #receive (data: unknown): void {
    this.#lastReceived = Date.now()
    if (typeof data !== 'string') {
      this.#deliver(new Uint8Array(data as ArrayBuffer) as In)
      return
    }
    if (isPing(data)) {
      this.#serverPings = true
      this.#socket!.send('{"type":"pong"}')
      return
    }
    if (isPong(data) && this.#serverPings) {
      if (this.#pingSentAt > 0) this.latency = this.#lastReceived - this.#pingSentAt
      this.#pingSentAt = 0
      return
    }
    const frame = this.#plain ? undefined : parseFrame(data)
    if (frame === undefined) {
      this.#deliver(data as In)
    } else if (frame.type === 'welcome') {
      this.#welcome(frame)
    } else {
      if (frame.offset !== undefined) this.#offset = frame.offset
      this.#deliver((frame.binary === true ? fromBase64(frame.data as string) : frame.data) as In)
    }
  }

  #welcome (frame: WelcomeFrame): void {
    this.clientId = frame.clientId
    this.#token = frame.token
    this.#offset = frame.offset
    this.emit('welcome', frame)
    if (!this.#resuming) return
    if (frame.resumed) this.emit('resumed', { replayed: frame.replayed ?? 0 })
    else this.emit('resumeFailed', { reason: String(frame.resumeFailed) })
  }

  #deliver (data: In): void {
    for (const stream of this.#streams) stream.push(data)
    this.emit('message', data)
  }

  /** The heartbeat: a ping every `interval` (for the latency), a reconnect when the server went silent. */
  #tick (): void {
    if (!this.#serverPings) return
    const now = Date.now()
    const { interval, timeout } = this.#heartbeat!
    if (now - this.#lastReceived >= timeout) {
      this.emit('error', new ClientError(SERVER_SILENT, `nothing from the server for ${now - this.#lastReceived} ms`))
      this.#abandon(this.#socket!, 'server silent')
    } else if (this.#pingSentAt === 0 && now - this.#lastPing >= interval) {
      this.#pingSentAt = this.#lastPing = now
      this.#socket!.send('{"type":"ping"}')
    }
  }

  /** Leaves a socket that cannot be trusted to close: no close handshake to wait for. */
  #abandon (socket: SocketLike, reason: string): void {
    this.#detach(socket)
    const terminate = (socket as { terminate?: () => void }).terminate
    if (terminate !== undefined) terminate.call(socket)
    else socket.close(4000, reason)
    this.#lost(1006, reason)
  }

  #detach (socket: SocketLike): void {
    socket.onopen = socket.onmessage = socket.onclose = null
  }

  /** The connection is gone: reconnect if the code and the options allow it. */
  #lost (code: number, reason: string): void {
    this.#stop()
    this.#socket = undefined
    if (this.#openedAt > 0 && Date.now() - this.#openedAt >= this.#minUptime) this.#attempt = 0
    this.#openedAt = 0
    const advice = reconnectAdvice(code)
    const backoff = this.#backoff
    if (backoff === undefined || advice === 'stop' || (backoff.maxAttempts > 0 && this.#attempt >= backoff.maxAttempts)) {
      const why = backoff === undefined ? 'reconnect is off' : advice === 'stop' ? `close code ${code} forbids a reconnect` : `${backoff.maxAttempts} attempts failed`
      this.#finish({ code, reason, willReconnect: false }, new ClientError(GAVE_UP, why))
      return
    }
    const delay = backoffDelay(backoff, this.#attempt, this.#random, advice === 'backoff')
    this.#attempt++
    this.#state = 'reconnecting'
    this.emit('close', { code, reason, willReconnect: true })
    this.emit('reconnecting', { attempt: this.#attempt, delay })
    this.#timer = setTimeout(() => this.#open(), delay)
  }

  #stop (): void {
    clearTimeout(this.#timer)
    clearInterval(this.#ticker)
    this.#timer = this.#ticker = undefined
    this.#pingSentAt = 0
    this.#serverPings = false
  }

  #finish (info: CloseInfo, err?: ClientError): void {
    this.#state = 'closed'
    this.#socket = undefined
    if (err !== undefined) this.emit('error', err)
    this.emit('close', info)
    for (const stream of this.#streams) stream.end()
    this.#streams.clear()
    this.#opened?.reject(err ?? new ClientError(CLOSED, 'closed before it opened'))
    this.#opened = this.#opening = undefined
  }
}
