import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import type { Principal } from './auth.ts'
import type { RawData, WebSocket } from 'ws'
import type { Encoded, OutboundMessage } from './outbound/encode.ts'
import type { RouteSettings } from './route-settings.ts'
import type { SessionOrigin } from './resume/sessions.ts'
import type { AnswerIn, DataIn } from './client/requests.ts'
import { kBuckets, kConnectedAt, kDispatch, kHeld, kHost, kInbound, kMarkClosed, kMarkClosing, kPingSentAt, kRequest, kRooms, kSlowSince, kSocketError, kUpstream, kHandshake, kGeneration } from './symbols.ts'
import { NO_METADATA } from './identity.ts'

/** Why a connection ended; the `disconnectReason` of the disconnect event and log line. */
export type DisconnectReason =
  | 'client_close' | 'network_error' | 'heartbeat_timeout' | 'replaced' | 'server_shutdown'
  | 'server_disconnect' | 'message_too_large' | 'queue_overflow' | 'connection_limit' | 'user_limit' | 'ip_limit'
  | 'handler_error' | 'protocol_error' | 'slow_consumer' | 'rate_limited' | 'invalid_messages'
  | 'unauthorized' | 'forbidden' | 'token_expired'

export interface DisconnectInfo {
  code: number
  reason: string
  disconnectReason: DisconnectReason
  durationMs: number
  /** The rooms the connection was in. */
  rooms: string[]
}

export interface ConnectionStats {
  messagesIn: number
  messagesOut: number
  bytesIn: number
  bytesOut: number
}

/**
 * `redelivered`: true when the frame may have reached the route's listeners before (a
 * numbered client resumed from the session of an instance that crashed, PROTOCOL.md).
 */
export type MessageListener = (data: RawData, isBinary: boolean, redelivered: boolean) => unknown
export type CloseListener = (info: DisconnectInfo) => unknown

/**
 * What a connection asks of its manager, and what its socket's listeners report
 * (inbound/listeners.ts). One object per manager, shared by all connections.
 * @internal
 */
export interface ConnectionHost {
  tooLarge (conn: ManagedConnection, size: number): void
  heartbeatPong (conn: ManagedConnection, now: number): void
  appPing (conn: ManagedConnection, now: number): void
  closed (conn: ManagedConnection, code: number, reason: string): void
  failed (conn: ManagedConnection, err: Error): void
  rateLimited (conn: ManagedConnection, size: number): void
  routeMessage (conn: ManagedConnection, data: RawData, isBinary: boolean, redelivered: boolean): void
  /** A numbered client's frame was counted (protocol 2): acknowledge it soon. */
  counted (conn: ManagedConnection, upstream: UpstreamState): void
  refreshAuth (conn: ManagedConnection, data: RawData): void
  /** A `{"type":"response"…}` frame: the answer to one of the server's requests (requests.ts). */
  response (conn: ManagedConnection, data: RawData): void
  request (conn: ManagedConnection, type: string, data: unknown, options: RequestOptions | undefined): Promise<unknown>
  send (conn: ManagedConnection, message: OutboundMessage, options?: { volatile?: boolean }): boolean
  /** A message to this connection alone through the replay log, sent now when it is open (outbound/exchange.ts). */
  logged (conn: ManagedConnection, message: Encoded): void
  join (conn: ManagedConnection, room: string): boolean
  leave (conn: ManagedConnection, room: string): boolean
  close (conn: ManagedConnection, code: number, reason: string, why: DisconnectReason, extra?: object): void
  listenerFailed (conn: ManagedConnection, err: unknown): void
  /** A volatile message was dropped for a slow consumer. */
  dropped (conn: ManagedConnection): void
}

/** `conn.request()`'s options. */
export interface RequestOptions {
  /** How long to wait for the answer, in ms (default the plugin's `requests.timeout`, 10 s). */
  timeout?: number
}

/**
 * `conn.typed<M>()`: the same connection, its `request` typed by the map `M` of what the
 * client handles (`{ confirm: { data: …, answer: … } }`, the map the client's `handle` takes too).
 */
export interface TypedRequests<M extends object> {
  request<K extends keyof M & string> (type: K, data: DataIn<M, K>, options?: RequestOptions): Promise<AnswerIn<M, K>>
}

/*
 * The state other modules keep on a connection, declared here so that the connection
 * imports none of them (they import it).
 */

/**
 * A connection's inbound rate limiting (inbound/rate-limit.ts): tokens left (messages, bytes), when
 * last refilled, violations in the window.
 */
export interface InboundState {
  tokens: number
  byteTokens: number
  refilledAt: number
  violations: number
  violationsSince: number
}

/**
 * A resumed connection's tokens until the client is first heard from (resume/resumption.ts):
 * the one it used, and the one its welcome carried.
 */
export interface Handshake {
  readonly used: { readonly nonce: string, readonly expiresAt: number }
  readonly issued: { readonly nonce: string, readonly expiresAt: number }
  /** The log the used token's offsets belong to, when the resume came from another instance's. */
  readonly from?: SessionOrigin
}

/**
 * A numbered client's frames (protocol 2, inbound/acks.ts): how many of the session's frames
 * the server has had, how many it has acknowledged, up to which number a frame may have
 * been processed before (a resume from a crashed instance's snapshot), and the count the
 * presence last recorded. Made only for connections that asked for protocol 2.
 */
export interface UpstreamState {
  received: number
  acked: number
  redeliverUntil: number
  recorded: number
  /** The number of the first frame held for a `message` listener not attached yet (0 when none). */
  held: number
  /** How many unacknowledged frames make an ack go out at once (inbound/acks.ts). */
  every: number
}

/** A per-type rate-limit bucket of the message router: messages only. */
export interface Bucket { tokens: number, refilledAt: number }

/**
 * Plugin messages waiting, in order, for the app's fragmented message to end (outbound/write.ts):
 * while the app has one open on the raw socket (`socket.send(…, { fin: false })`), ws would
 * send any data frame as a continuation of it. Made only while a fragment is open.
 */
export interface Held {
  readonly messages: Array<[message: Encoded, control: boolean]>
  bytes: number
  /** Stops watching for the end of the fragment. */
  readonly stop: () => void
}

const OPEN = 0
const NO_ROOMS: ReadonlySet<string> = new Set()
const CLOSING = 1
const CLOSED = 2

/**
 * A WebSocket the plugin manages: who it is, its rooms and counters, and the ways to
 * talk to it. Methods live on the prototype and socket listeners are shared
 * functions, so a connection costs one object, its stats and its room set.
 */
export class ManagedConnection {
  /** The clientId: unique among this instance's connections. */
  readonly id: string
  readonly userId: string | undefined
  /** The raw `ws` socket. */
  readonly socket: WebSocket
  /** The merged options of the route this connection came in on. */
  readonly route: RouteSettings
  /** The client's IP address (`request.ip`, so Fastify's `trustProxy` applies); undefined for `register()`ed sockets. */
  ip: string | undefined = undefined
  /** Who authenticated, on routes with `authenticate` / `auth`; undefined when anonymous. */
  principal: Principal | undefined = undefined
  readonly stats: ConnectionStats = { messagesIn: 0, messagesOut: 0, bytesIn: 0, bytesOut: 0 }
  /** Last measured heartbeat round trip in ms, undefined until one completed. */
  rtt: number | undefined = undefined
  /** When anything (message, pong, ping) last arrived, ms since the epoch. */
  lastSeen: number
  /** How it ended, once it has. */
  disconnectInfo: DisconnectInfo | undefined = undefined
  /** @internal */
  readonly [kConnectedAt]: number;
  /** @internal */
  [kRequest]: FastifyRequest | undefined = undefined;
  /** @internal */
  [kBuckets]: Map<string, Bucket> | undefined = undefined;
  /** @internal 0 when no ping is outstanding. */
  [kPingSentAt] = 0;
  /** @internal 0 when the send buffer is not above the high-water mark. */
  [kSlowSince] = 0;
  /** @internal Undefined when nothing is held. */
  [kHeld]: Held | undefined = undefined;
  /** @internal Made on the first message of a rate-limited route or the first violation. */
  [kInbound]: InboundState | undefined = undefined;
  /** @internal To tell a network drop from a clean close. */
  [kSocketError]: Error | undefined = undefined;
  /** @internal Only on connections that asked for protocol 2. */
  [kUpstream]: UpstreamState | undefined = undefined;
  /** @internal How many times the client resumed before this connection (resume/sessions.ts). */
  [kGeneration] = 0;
  /** @internal Set by a resume's welcome, cleared by the first frame from the client. */
  [kHandshake]: Handshake | undefined = undefined;
  /** @internal Made on the first join. */
  [kRooms]: Set<string> | undefined = undefined
  /** @internal */
  readonly [kHost]: ConnectionHost

  #state = OPEN
  #metadata: Record<string, unknown> | undefined
  #connectedAt: Date | undefined = undefined
  #parentLog: FastifyBaseLogger
  #log: FastifyBaseLogger | undefined = undefined
  #listeners: MessageListener[] | undefined = undefined
  #closeListeners: CloseListener[] | undefined = undefined
  #queue: Array<[RawData, boolean, boolean]> | undefined = undefined
  #queuedBytes = 0
  #flushScheduled = false
  #rawMode = false

  /** @internal The manager makes connections. */
  constructor (host: ConnectionHost, socket: WebSocket, identity: { clientId: string, userId: string | undefined, metadata: Record<string, unknown> }, route: RouteSettings, log: FastifyBaseLogger) {
    this[kHost] = host
    this.socket = socket
    this.id = identity.clientId
    this.userId = identity.userId
    this.#metadata = identity.metadata === NO_METADATA ? undefined : identity.metadata
    this.route = route
    this.#parentLog = log
    this[kConnectedAt] = Date.now()
    this.lastSeen = this[kConnectedAt]
  }

  /** Anything the app keeps with the connection (`identify`'s `metadata`); an object of its own, made on first read when none was given. */
  get metadata (): Record<string, unknown> {
    this.#metadata ??= {}
    return this.#metadata
  }

  set metadata (value: Record<string, unknown>) {
    this.#metadata = value
  }

  /** When it connected. */
  get connectedAt (): Date {
    this.#connectedAt ??= new Date(this[kConnectedAt])
    return this.#connectedAt
  }

  /** A child logger with this connection's clientId and userId, made on first use. */
  get log (): FastifyBaseLogger {
    this.#log ??= this.#parentLog.child(this.userId === undefined ? { clientId: this.id } : { clientId: this.id, userId: this.userId })
    return this.#log
  }

  /** @internal What another instance needs to resume this connection (on resumable routes). */
  get session (): { metadata: Record<string, unknown>, connectedAt: number, generation: number, upstream?: UpstreamState } | undefined {
    if (this.route.reconnect === undefined) return undefined
    const upstream = this[kUpstream]
    const session = { metadata: this.metadata, connectedAt: this[kConnectedAt], generation: this[kGeneration] }
    return upstream === undefined ? session : { ...session, upstream }
  }

  /** The rooms this connection is in. */
  get rooms (): ReadonlySet<string> {
    return this[kRooms] ?? NO_ROOMS
  }

  /** True until the plugin starts closing the connection or it closes. */
  get isOpen (): boolean {
    return this.#state === OPEN
  }

  /** `closed` from the moment the plugin starts ending it (it leaves every index at once). */
  get state (): 'open' | 'closed' {
    return this.#state === OPEN ? 'open' : 'closed'
  }

  /** Sends a string (text), a Buffer / typed array (binary) or any JSON value. False when not open. */
  send (message: OutboundMessage, options?: { volatile?: boolean }): boolean {
    return this[kHost].send(this, message, options)
  }

  /**
   * Asks the client: `{ type: "request", id, name: type, data }`; resolves with what its
   * `handle(type, …)` answered. Rejects with RequestFailedError (`err.clientCode`: the
   * client's code, `UNKNOWN_TYPE` without a handler), RequestTimeoutError, or
   * RequestClosedError when the connection ends for good (on resume-protocol routes a drop
   * is not the end: the resumed connection can still answer).
   */
  request (type: string, data?: unknown, options?: RequestOptions): Promise<unknown> {
    return this[kHost].request(this, type, data, options)
  }

  /** This connection, with `request` typed by `M` (see TypedRequests). */
  typed<M extends object> (): TypedRequests<M> {
    return this as TypedRequests<M>
  }

  join (room: string): boolean {
    return this[kHost].join(this, room)
  }

  leave (room: string): boolean {
    return this[kHost].leave(this, room)
  }

  /** Closes with a close frame; a peer that does not answer within `closeTimeout` is terminated. */
  close (code = 1000, reason = ''): void {
    this[kHost].close(this, code, reason, 'server_disconnect')
  }

  /**
   * `message`: every inbound data message (heartbeat frames excluded). Messages that arrive
   * before the first `message` listener is attached are queued and delivered to it in order.
   * `close`: once, when the connection has left the registry.
   */
  on (event: 'message', listener: MessageListener): this
  on (event: 'close', listener: CloseListener): this
  on (event: 'message' | 'close', listener: MessageListener | CloseListener): this {
    if (event === 'close') {
      const info = this.disconnectInfo
      if (info !== undefined) {
        // already over (refused at registration, or closed before the handler got here): tell it anyway
        queueMicrotask(() => { (listener as CloseListener)(info) })
      } else {
        (this.#closeListeners ??= []).push(listener as CloseListener)
      }
      return this
    }
    (this.#listeners ??= []).push(listener as MessageListener)
    if (this.#queue !== undefined && !this.#flushScheduled) {
      this.#flushScheduled = true
      queueMicrotask(() => this.#flush())
    }
    return this
  }

  off (event: 'message' | 'close', listener: MessageListener | CloseListener): this {
    const list = event === 'message' ? this.#listeners : this.#closeListeners
    const i = list?.indexOf(listener as never) ?? -1
    if (i !== -1) list!.splice(i, 1)
    return this
  }

  /** @internal Called by the socket's message listener for each data message. */
  [kDispatch] (data: RawData, isBinary: boolean, redelivered = false): void {
    if (this.#queue !== undefined || this.#listeners === undefined || this.#listeners.length === 0) {
      this.#enqueue(data, isBinary, redelivered)
      return
    }
    this.#deliver(this.#listeners, data, isBinary, redelivered)
  }

  /** @internal Marks the connection closing: it is skipped by every send from now on. */
  [kMarkClosing] (): boolean {
    if (this.#state !== OPEN) return false
    this.#state = CLOSING
    return true
  }

  /** @internal Marks the connection closed and tells its close listeners; the manager calls it once. */
  [kMarkClosed] (info: DisconnectInfo): void {
    this.#state = CLOSED
    this.disconnectInfo = info
    this.#queue = undefined
    const listeners = this.#closeListeners
    this.#closeListeners = undefined
    if (listeners !== undefined) {
      for (const fn of listeners) {
        try {
          fn(info)
        } catch (err) {
          this[kHost].listenerFailed(this, err)
        }
      }
    }
  }

  #deliver (listeners: MessageListener[], data: RawData, isBinary: boolean, redelivered: boolean): void {
    for (let i = 0; i < listeners.length; i++) {
      try {
        const result = listeners[i](data, isBinary, redelivered) as { catch?: unknown } | undefined
        if (result !== null && typeof result === 'object' && typeof result.catch === 'function') {
          (result as Promise<unknown>).catch((err: unknown) => this[kHost].listenerFailed(this, err))
        }
      } catch (err) {
        this[kHost].listenerFailed(this, err)
      }
    }
  }

  #enqueue (data: RawData, isBinary: boolean, redelivered: boolean): void {
    if (this.#rawMode || this.#state !== OPEN) return
    if (this.#listeners === undefined && this.socket.listenerCount('message') > 1) {
      // The route reads the raw socket itself: nothing to hold messages for.
      this.#rawMode = true
      this.#queue = undefined
      return
    }
    if (this.#queue === undefined) {
      // the frame just counted: if the connection ends before a listener comes, it was never delivered
      const upstream = this[kUpstream]
      if (upstream !== undefined) upstream.held = upstream.received
    }
    const queue = this.#queue ??= []
    this.#queuedBytes += (data as Buffer).length
    if (queue.length >= this.route.limits.maxQueuedMessages || this.#queuedBytes > this.route.limits.maxQueuedBytes) {
      this.#queue = undefined
      this[kHost].close(this, 1008, 'inbound queue overflow', 'queue_overflow')
      return
    }
    queue.push([data, isBinary, redelivered])
  }

  #flush (): void {
    this.#flushScheduled = false
    const queue = this.#queue
    // Listeners may have been removed again, or the connection closed, before the flush ran.
    if (queue === undefined || this.#listeners === undefined || this.#listeners.length === 0) return
    for (let i = 0; i < queue.length && this.#state === OPEN; i++) {
      this.#deliver(this.#listeners, queue[i][0], queue[i][1], queue[i][2])
    }
    this.#queue = undefined
    this.#queuedBytes = 0
    const upstream = this[kUpstream]
    if (upstream !== undefined) upstream.held = 0
  }
}
