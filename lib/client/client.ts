import { reconnectAdvice } from '../close-codes.ts'
import { backoffDelay } from './backoff.ts'
import { Timer, type Clock } from './clock.ts'
import { Emitter } from './emitter.ts'
import { ClientError, ClientErrorCodes as Codes } from './errors.ts'
import { CLIENT_PING, fromBase64, isHeartbeatLike, isPing, isPong, parseAck, parseMessage, parseWelcome, pongFor, type ResumeFailure, type WelcomeFrame } from './frames.ts'
import { heartbeatStep } from './heartbeat.ts'
import { MessageStream } from './message-stream.ts'
import { resolveOptions, type ClientOptions, type ResolvedOptions } from './options.ts'
import { ClientRequests, type AnswerIn, type ClientApi, type ClientRequestOptions, type DataIn, type HandlesOfApi, type RequestHandler, type RequestsOfApi } from './requests.ts'
import { SendQueue, type Frame } from './send-queue.ts'
import { Outbox } from './outbox.ts'
import { Session } from './session.ts'
import { ClientPresence, type PresenceChange, type RoomPresence } from './presence.ts'
import type { SocketCloseEvent, SocketLike, SocketMessageEvent } from './socket.ts'

/*
 * A WebSocket that comes back: it reconnects with backoff and jitter when the close code
 * allows it, resumes its session on resume-protocol routes (token and offset kept from
 * the server's frames), answers and watches the heartbeat, and keeps what is sent while
 * it is away. It runs in browsers (the global WebSocket) and in Node (pass `ws`).
 */

/**
 * `idle` until `connect()`; `connecting` during its first attempt; `open` (ready: on
 * resume-protocol routes welcomed when a welcome is awaited); `reconnecting` from a drop or
 * a failed attempt until the next connection is ready; `closed` for good (`close()`, a
 * close code that forbids a reconnect, `maxAttempts` failed, or `reconnect: false`).
 */
export type ClientState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed'

/** What `send` takes: a string as a text frame, binary as a binary frame, anything else as JSON text. */
export type Outgoing<Out> = Out | string | ArrayBuffer | ArrayBufferView

export interface CloseInfo { code: number, reason: string, willReconnect: boolean }

export interface ClientEvents<In> {
  /** A connection is open and ready: queued sends went out just before. */
  open: []
  /** On resume-protocol routes, each connection's first frame (clientId, token, offset). */
  welcome: [frame: WelcomeFrame]
  /** A message: text as a string, binary as a Uint8Array, envelopes unwrapped. */
  message: [data: In]
  /** A connection ended (or an attempt failed); `willReconnect` says whether another follows. */
  close: [info: CloseInfo]
  /** The next attempt starts in `delay` ms; `attempt` counts from 1 since the last stable connection. */
  reconnecting: [info: { attempt: number, delay: number }]
  /** The session came back; its `replayed` missed messages follow as `message` events. */
  resumed: [info: { replayed: number }]
  /**
   * The session could not come back and a fresh one started: fetch the state you need again.
   * `resent`: on protocol 2, the unacknowledged frames of the old session that go into the
   * new one (the server may have had them already: at-least-once for these).
   */
  resumeFailed: [info: { reason: ResumeFailure, resent: number }]
  /** A presence room's map changed (a `presence.state` or `presence.diff` of the server): see `presence(room)`. */
  presence: [change: PresenceChange]
  /** Something went wrong that was not the answer to a call: see `ClientErrorCodes`. */
  error: [err: Error]
}

/** What the current connection turned out to be. */
type Mode = 'unknown' | 'stabilizer' | 'plain'

interface Waiting { resolve: () => void, reject: (err: Error) => void }

/**
 * `In`: what messages the server sends; `Out`: what `send` takes; `Api`: the requests both
 * ways (see ClientApi), typing `request` and `handle`.
 */
export class StabilizerClient<In = unknown, Out = unknown, Api extends ClientApi = ClientApi> extends Emitter<ClientEvents<In>> {
  readonly url: string
  #latency: number | undefined = undefined
  #options: ResolvedOptions
  #clock: Clock
  #timer: Timer
  #state: ClientState = 'idle'
  #socket: SocketLike | undefined = undefined
  #mode: Mode = 'unknown'
  #resuming = false
  #attempt = 0
  #openedAt = 0
  #lastReceived = 0
  #presence = new ClientPresence()
  #pingSentAt = 0
  #serverHeartbeat: boolean
  #queue: SendQueue
  /** Protocol 2: this connection numbers its frames (asked with `v=2`, until the server says otherwise). */
  #numbered = false
  #outbox = new Outbox()
  #session = new Session()
  #streams = new Set<MessageStream<In>>()
  #waiting: (Waiting & { promise: Promise<void> }) | undefined = undefined
  #requests: ClientRequests

  constructor (url: string, options: ClientOptions = {}) {
    super()
    this.url = url
    this.#options = resolveOptions(options)
    this.#clock = this.#options.clock
    this.#timer = new Timer(this.#clock)
    this.#queue = new SendQueue(this.#options.maxQueueSize)
    this.#serverHeartbeat = this.#options.heartbeat?.start === 'open'
    this.#requests = new ClientRequests(this.#clock, this.#options.requestTimeout, frame => this.send(frame), err => {
      if ((err as ClientError).code !== Codes.CLOSED) this.emit('error', err as Error)
    })
  }

  get state (): ClientState {
    return this.#state
  }

  /** Round trip of the last heartbeat ping, in ms; undefined before the first answer. */
  get latency (): number | undefined {
    return this.#latency
  }

  /** This client's id on resume-protocol routes, from the last welcome. */
  get clientId (): string | undefined {
    return this.#session.clientId
  }

  /** The offset a resume would ask from: the last one received. */
  get offset (): number {
    return this.#session.offset
  }

  /** How many sends wait for the connection. */
  get queued (): number {
    return this.#queue.size
  }

  /** Protocol 2: how many sent frames wait for the server's acknowledgement (they are sent again after a resume). */
  get unacknowledged (): number {
    return this.#outbox.size
  }

  /**
   * Connects, reconnecting as the options allow; resolves when a connection is open (after
   * its welcome when one is awaited), rejects with `WS_CLIENT_GAVE_UP` or `WS_CLIENT_CLOSED`
   * when the client closed for good first. While connecting it returns the same promise.
   */
  connect (): Promise<void> {
    if (this.#state === 'open') return Promise.resolve()
    if (this.#waiting === undefined) {
      let settle!: Waiting
      const promise = new Promise<void>((resolve, reject) => { settle = { resolve, reject } })
      this.#waiting = { promise, ...settle }
    }
    const { promise } = this.#waiting
    if (this.#state === 'idle' || this.#state === 'closed') {
      this.#state = 'connecting'
      this.#attempt = 0
      this.#open()
    }
    return promise
  }

  /**
   * Sends now when open; otherwise keeps the frame for the next connection, in order, up to
   * `maxQueueSize` (one more throws `WS_CLIENT_QUEUE_FULL`). Throws `WS_CLIENT_CLOSED`
   * before `connect()` and after the client closed for good. On a server that speaks
   * protocol 2 (resume-protocol routes) each frame is kept until the server acknowledges it
   * and sent again after a resume: it reaches the route exactly once, in order. Kept and
   * waiting frames share `maxQueueSize`. Elsewhere nothing is acknowledged: a send in the
   * moment before a drop the client has not noticed yet can be lost.
   */
  send (data: Outgoing<Out>): void {
    if (this.#state === 'idle' || this.#state === 'closed') {
      throw new ClientError(Codes.CLOSED, `Expected a connecting or open client, got a ${this.#state} one`)
    }
    const frame = typeof data === 'string' || data instanceof ArrayBuffer || ArrayBuffer.isView(data) ? data : JSON.stringify(data)
    if (this.#state !== 'open') {
      this.#queue.push(frame, this.#outbox.size)
      return
    }
    if (this.#numbered && !isHeartbeatLike(frame)) {
      if (this.#outbox.size >= this.#options.maxQueueSize) {
        throw new ClientError(Codes.QUEUE_FULL, `Expected at most maxQueueSize (${this.#options.maxQueueSize}) sends to wait for an acknowledgement, got one more`)
      }
      this.#outbox.push(frame)
    }
    this.#socket!.send(frame)
  }

  /**
   * Asks the server: sends `{ type, id, data }` (now, or queued like `send` while
   * reconnecting, to go out once after the resume) and resolves with the `data` of the
   * `<type>.result` answer. Rejects with a ClientError: the server's `code`
   * (VALIDATION_FAILED, UNKNOWN_TYPE, RATE_LIMITED, INTERNAL…), WS_CLIENT_REQUEST_TIMEOUT
   * after `timeout` (default `requestTimeout`), WS_CLIENT_CLOSED when the client closes for
   * good first, or what `send` throws.
   */
  request<K extends keyof RequestsOfApi<Api> & string> (type: K, data: DataIn<RequestsOfApi<Api>, K>, options?: ClientRequestOptions): Promise<AnswerIn<RequestsOfApi<Api>, K>> {
    return this.#requests.request(type, data, options) as Promise<AnswerIn<RequestsOfApi<Api>, K>>
  }

  /**
   * Answers the server's `conn.request(type, …)`: the handler's value (awaited) goes back,
   * an error it throws goes back with its `code` (or INTERNAL). Without a handler the
   * server gets UNKNOWN_TYPE. `handle(type, undefined)` removes it.
   */
  handle<K extends keyof HandlesOfApi<Api> & string> (type: K, handler: RequestHandler<DataIn<HandlesOfApi<Api>, K>, AnswerIn<HandlesOfApi<Api>, K>> | undefined): this {
    this.#requests.handle(type, handler as RequestHandler | undefined)
    return this
  }

  /**
   * Closes for good with `code` (1000, or 3000-4999 as browsers require) and `reason`: no
   * reconnect, queued sends dropped, the session ended (a later `connect()` starts afresh).
   */
  close (code = 1000, reason = ''): void {
    if (code !== 1000 && (code < 3000 || code > 4999)) throw new RangeError(`Expected a close code of 1000 or 3000-4999, got \`${code}\``)
    if (this.#state === 'idle' || this.#state === 'closed') return
    const socket = this.#socket
    if (socket !== undefined) {
      this.#detach(socket)
      socket.close(code, reason)
    }
    this.#session.clear()
    this.#outbox.clear()
    this.#finish({ code, reason, willReconnect: false }, new ClientError(Codes.CLOSED, 'close() was called before a connection opened'))
  }

  /** The messages as they come, each to every iterator, until the client closes for good. */
  [Symbol.asyncIterator] (): AsyncIterator<In> {
    const stream = new MessageStream<In>(() => this.#streams.delete(stream))
    if (this.#state === 'closed') stream.end()
    else this.#streams.add(stream)
    return stream
  }

  /** One attempt: a new socket, and the open timeout until it is ready. */
  #open (): void {
    this.#resuming = this.#session.token !== undefined
    this.#mode = this.#options.protocol === 'plain' ? 'plain' : 'unknown'
    this.#numbered = this.#mode === 'unknown'
    // no session to resume: what the last one did not get acknowledged starts the next
    if (!this.#resuming) this.#outbox.restart()
    let socket: SocketLike
    try {
      socket = new this.#options.WebSocket(this.#session.address(this.url, this.#numbered ? this.#outbox.sent : undefined, this.#options.maxQueueSize), this.#options.protocols)
    } catch (err) {
      // a URL the WebSocket refuses now, it will refuse on every attempt
      const gaveUp = new ClientError(Codes.GAVE_UP, `the WebSocket could not be created: ${String(err)}`, { cause: err })
      this.#finish({ code: 1006, reason: 'no connection', willReconnect: false }, gaveUp)
      return
    }
    this.#socket = socket
    socket.binaryType = 'arraybuffer'
    this.#timer.set(this.#options.openTimeout, () => {
      this.#abandon(socket, new ClientError(Codes.OPEN_TIMEOUT, `Expected the connection to be ready within openTimeout (${this.#options.openTimeout} ms), it was not`))
    })
    socket.onopen = () => this.#opened()
    socket.onmessage = (event: SocketMessageEvent) => {
      try {
        this.#receive(event.data)
      } catch (err) {
        this.emit('error', new ClientError(Codes.BAD_FRAME, `a frame could not be read: ${String(err)}`, { cause: err }))
      }
    }
    socket.onclose = (event: SocketCloseEvent) => this.#lost(event.code, event.reason)
    socket.onerror = (event: unknown) => {
      this.emit('error', new ClientError(Codes.SOCKET_ERROR, 'the WebSocket reported an error (its close follows)', { cause: event }))
    }
  }

  #opened (): void {
    this.#lastReceived = this.#openedAt = this.#clock.now()
    // a resume needs its welcome (the new token, the offset) before anything else
    if (this.#resuming || this.#options.protocol === 'stabilizer') return
    this.#ready()
  }

  #receive (data: unknown): void {
    this.#lastReceived = this.#clock.now()
    if (typeof data === 'string') {
      if (isPing(data)) {
        this.#serverPing(data)
        return
      }
      if (this.#serverHeartbeat && isPong(data)) {
        if (this.#pingSentAt > 0) this.#latency = this.#lastReceived - this.#pingSentAt
        this.#pingSentAt = 0
        return
      }
      if (this.#mode === 'unknown') {
        const welcome = parseWelcome(data)
        if (welcome !== undefined) {
          this.#welcome(welcome)
          return
        }
      } else if (this.#mode === 'stabilizer') {
        if (this.#numbered) {
          const received = parseAck(data)
          if (received !== undefined) {
            this.#acknowledged(received)
            return
          }
        }
        const frame = parseMessage(data)
        if (frame !== undefined) {
          if (frame.offset !== undefined) this.#session.offset = frame.offset
          // protocol 2: the exchange frames of requests both ways come through the log, wrapped
          if (this.#numbered && frame.binary !== true && this.#requests.takeValue(frame.data)) return
          this.#deliver((frame.binary === true ? fromBase64(frame.data as string) : frame.data) as In)
          return
        }
      }
    }
    if (this.#mode === 'unknown') this.#runPlain()
    if (typeof data === 'string' && (this.#requests.take(data) || this.#presenceFrame(data))) return
    this.#deliver((typeof data === 'string' ? data : new Uint8Array(data as ArrayBuffer)) as In)
  }

  /** Whether the frame was a presence frame (applied, or reported when it could not be read). */
  #presenceFrame (text: string): boolean {
    const changes = this.#presence.take(text)
    if (changes === undefined) return false
    if (typeof changes === 'string') this.emit('error', new ClientError(Codes.BAD_FRAME, `Expected a presence frame to be valid, got ${changes}`))
    else for (const change of changes) this.emit('presence', change)
    return true
  }

  /** What the client knows of a presence room (its state came), or undefined. */
  presence (room: string): RoomPresence | undefined {
    return this.#presence.get(room)
  }

  #serverPing (ping: string): void {
    this.#socket!.send(pongFor(ping))
    if (this.#serverHeartbeat) return
    this.#serverHeartbeat = true
    if (this.#state === 'open') this.#watch()
  }

  #welcome (frame: WelcomeFrame): void {
    this.#mode = 'stabilizer'
    this.#session.welcome(frame)
    if (!(frame.v >= 2)) {
      // protocol 1: nothing is counted; what was kept goes out once more (#ready) and is forgotten
      this.#numbered = false
    } else if (this.#resuming && frame.resumed) {
      this.#acknowledged(frame.received ?? 0, true)
    } else if (this.#resuming) {
      this.#outbox.restart()
    }
    this.emit('welcome', frame)
    if (this.#resuming) {
      if (frame.resumed) this.emit('resumed', { replayed: frame.replayed ?? 0 })
      else this.emit('resumeFailed', { reason: frame.resumeFailed!, resent: this.#numbered ? this.#outbox.size : 0 })
    }
    if (this.#state !== 'open') this.#ready()
    else if (!this.#numbered) this.#outbox.clear()
  }

  /** The server has had `received` frames of the session; more than were sent is a broken server. */
  #acknowledged (received: number, resumed = false): void {
    if (resumed ? this.#outbox.resume(received) : this.#outbox.ack(received)) return
    this.emit('error', new ClientError(Codes.BAD_FRAME, `Expected an acknowledgement of at most the ${this.#outbox.sent} frames sent, got ${received}`))
  }

  /** The first frame was not a welcome: a plain route, whatever was expected. */
  #runPlain (): void {
    this.#mode = 'plain'
    this.#numbered = false
    this.#outbox.clear()
    if (this.#state === 'open') return
    if (this.#options.protocol === 'stabilizer') this.emit('error', new ClientError(Codes.NOT_STABILIZER, 'Expected a welcome as the first frame (protocol: \'stabilizer\'), got a message'))
    this.#session.clear()
    this.#ready()
  }

  #ready (): void {
    // a welcome or error listener may have closed the client
    if (this.#socket === undefined) return
    this.#timer.clear()
    this.#state = 'open'
    const socket = this.#socket
    // the unacknowledged frames first, in order, then what was queued while away
    for (const frame of this.#outbox.pending()) socket.send(frame)
    if (!this.#numbered) this.#outbox.clear()
    for (const frame of this.#queue.take()) this.#put(socket, frame)
    this.#watch()
    const waiting = this.#waiting
    this.#waiting = undefined
    waiting?.resolve()
    this.emit('open')
  }

  #put (socket: SocketLike, frame: Frame): void {
    if (this.#numbered && !isHeartbeatLike(frame)) this.#outbox.push(frame)
    socket.send(frame)
  }

  #deliver (data: In): void {
    if (this.#socket === undefined) return
    for (const stream of this.#streams) stream.push(data)
    this.emit('message', data)
  }

  /** The heartbeat's turn of the timer, while open and once the server is known to speak it. */
  #watch (): void {
    const options = this.#options.heartbeat
    if (options === undefined || !this.#serverHeartbeat) return
    const now = this.#clock.now()
    const step = heartbeatStep(options, now, this.#lastReceived, this.#pingSentAt)
    if (step.silent) {
      this.#abandon(this.#socket!, new ClientError(Codes.SERVER_SILENT, `Expected something from the server within heartbeat.timeout (${options.timeout} ms), got nothing for ${step.idle} ms`))
      return
    }
    if (step.ping) {
      this.#pingSentAt = now
      this.#socket!.send(CLIENT_PING)
    }
    this.#timer.set(step.wait, () => this.#watch())
  }

  /** Leaves a socket that cannot be trusted to finish a close handshake. */
  #abandon (socket: SocketLike, err: ClientError): void {
    this.#detach(socket)
    const { terminate } = socket as { terminate?: () => void }
    if (typeof terminate === 'function') terminate.call(socket)
    else socket.close(4000, 'abandoned')
    this.#lost(1006, err.message, err)
  }

  #detach (socket: SocketLike): void {
    socket.onopen = socket.onmessage = socket.onclose = null
    // ws throws an error event nobody listens to: keep a listener
    socket.onerror = ignore
  }

  /** The connection is gone, or an attempt failed: reconnect when the code and the options allow it. */
  #lost (code: number, reason: string, err?: ClientError): void {
    this.#timer.clear()
    this.#socket = undefined
    this.#pingSentAt = 0
    const reconnect = this.#options.reconnect
    if (reconnect === undefined) {
      this.#finish({ code, reason, willReconnect: false }, new ClientError(Codes.GAVE_UP, 'reconnect is off'), err)
      return
    }
    if (this.#state === 'open' && this.#clock.now() - this.#openedAt >= reconnect.resetAfter) this.#attempt = 0
    const advice = reconnectAdvice(code)
    const stop = advice === 'stop'
      ? `close code ${code} means do not reconnect`
      : reconnect.maxAttempts > 0 && this.#attempt >= reconnect.maxAttempts ? `${reconnect.maxAttempts} reconnect attempts in a row failed` : undefined
    if (stop !== undefined) {
      this.#finish({ code, reason, willReconnect: false }, new ClientError(Codes.GAVE_UP, stop), err)
      return
    }
    const delay = backoffDelay(reconnect, this.#attempt, this.#options.random, advice === 'backoff')
    this.#attempt++
    this.#state = 'reconnecting'
    this.#timer.set(delay, () => this.#open())
    if (err !== undefined) this.emit('error', err)
    this.emit('close', { code, reason, willReconnect: true })
    this.emit('reconnecting', { attempt: this.#attempt, delay })
  }

  /** Closed for good: `reason` rejects a pending `connect()`; `err` and `reason` go to the error listeners. */
  #finish (info: CloseInfo, reason: ClientError, err?: ClientError): void {
    this.#timer.clear()
    this.#state = 'closed'
    this.#socket = undefined
    this.#queue.take()
    this.#requests.close()
    this.#outbox.clear()
    const streams = [...this.#streams]
    this.#streams.clear()
    for (const stream of streams) stream.end()
    const waiting = this.#waiting
    this.#waiting = undefined
    waiting?.reject(reason)
    if (err !== undefined) this.emit('error', err)
    if (reason.code === Codes.GAVE_UP) this.emit('error', reason)
    this.emit('close', info)
  }
}

function ignore (): void {}
