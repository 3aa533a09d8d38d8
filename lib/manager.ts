import { EventEmitter } from 'node:events'
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyBaseLogger } from 'fastify'
import type { WebSocket } from 'ws'
import { ManagedConnection, type ConnectionHost, type DisconnectInfo, type DisconnectReason } from './connection.ts'
import { Registry } from './registry.ts'
import { Rooms } from './rooms.ts'
import { Heartbeat } from './heartbeat.ts'
import { discardHeld, write } from './outbound/write.ts'
import type { OutboundMessage } from './outbound/encode.ts'
import { checkConnectionLimits, type LimitViolation } from './limits.ts'
import { errorLevel, isTooLarge, sentCloseCode } from './inbound/socket-errors.ts'
import { awaitClosed, type ShutdownReport } from './shutdown.ts'
import { flushWindows } from './outbound/frame.ts'
import { attachListeners } from './inbound/listeners.ts'
import { defaultRouteSettings, type RouteSettings } from './route-settings.ts'
import type { MessageRouter } from './inbound/router.ts'
import { normalizeIdentity, type Identity, type ResolvedIdentity } from './identity.ts'
import { Stats, connectionStats, userStats, type ConnectionStatsSnapshot, type RejectReason, type StatsSnapshot, type UserStatsSnapshot } from './stats.ts'
import type { ClaimRetry, ReconnectClaims } from './resume/tokens.ts'
import { ClusterView } from './cluster-view.ts'
import { ClusterOps } from './cluster-ops.ts'
import { InboundGuard } from './inbound/guard.ts'
import { Acks, ackThreshold } from './inbound/acks.ts'
import { continueCount, delivered, freshCount } from './resume/upstream-count.ts'
import { errorFrame } from './resume/protocol.ts'
import { ServerRequests } from './requests.ts'
import type { AuthFailure } from './auth.ts'
import type { PendingConnection } from './pending-connection.ts'
import { Resumption, type PendingResume, type UsedToken } from './resume/resumption.ts'
import type { Session } from './resume/sessions.ts'
import { PresenceTracker, type PresenceEvent } from './presence/tracker.ts'
import type { PresenceMeta } from './presence/state.ts'
import { Delivery, deliverTo, targetOf, toCluster, type BroadcastResult } from './delivery.ts'
import { MemoryAdapter } from './adapters/memory.ts'
import type { AdapterHealth, ClusterCounts, ClusterMessage, ClusterOp, GapInfo, WsAdapter } from './adapters/adapter.ts'
import type { ResolvedOptions } from './options.ts'
import { CloseCode } from './close-codes.ts'
import {
  BroadcastFailedError, ConnectionLimitExceededError, ConnectionNotFoundError, ConnectionTimeoutError,
  ShutdownError, WebSocketStabilizerError
} from './errors.ts'
import { kConnectedAt, kHeld, kMarkClosed, kMarkClosing, kPingSentAt, kRequest, kSocketError, kUpstream, kHandshake, kGeneration } from './symbols.ts'

export type { BroadcastResult } from './delivery.ts'

/** Why a connection is refused once upgraded: a limit, or the shutdown. */
type Refusal = Omit<LimitViolation, 'reason'> & { reason: LimitViolation['reason'] | 'server_shutdown' }

export interface SendOptions {
  /** Never logged for replay: a client that was away does not get it after a resume. */
  volatile?: boolean
}

export interface BroadcastOptions extends SendOptions {
  /** Only members of this room (or of any of these rooms). */
  room?: string | string[]
  /** clientIds that do not get it (typically the sender). */
  exclude?: string | Iterable<string>
}

/** A socket registered by hand with `register()`. */
export interface RegisterOptions extends Identity {
  rooms?: string[]
}

export interface ShutdownOptions {
  timeout?: number
  closeCode?: number
  closeReason?: string
  /** Connections closed at once (0: all at once); the plugin's `shutdown.batchSize` by default. */
  batchSize?: number
  /** The pause between two batches, in ms. */
  batchInterval?: number
}

export interface WsManagerEvents {
  connect: [conn: ManagedConnection]
  disconnect: [conn: ManagedConnection, info: DisconnectInfo]
  join: [conn: ManagedConnection, room: string]
  leave: [conn: ManagedConnection, room: string]
  error: [err: Error, conn: ManagedConnection | undefined]
  /** The link to the other instances came back after an outage; messages may have been lost. */
  gap: [info: GapInfo]
  /** Users joined or left a presence room, on any instance: each change once (see the README's Presence). */
  presence: [event: PresenceEvent]
}

/**
 * `fastify.wsManager`: the registry of this instance's connections, their users and
 * rooms, and every way to reach them. Local delivery is synchronous and never waits
 * on the adapter, which carries messages to other instances.
 */
export class WsManager extends EventEmitter<WsManagerEvents> {
  readonly options: ResolvedOptions
  readonly instanceId = randomUUID()
  readonly adapter: WsAdapter
  /** The same questions as the getters here, answered for every instance together (async). */
  readonly cluster: ClusterView
  #registry = new Registry()
  #rooms = new Rooms()
  #heartbeat: Heartbeat
  #stats: Stats
  #log: FastifyBaseLogger
  #host: ConnectionHost
  #defaultRoute: RouteSettings
  #shutdown: Promise<ShutdownReport> | undefined = undefined
  #started = false
  #resumption: Resumption
  #delivery: Delivery
  #guard: InboundGuard
  #requests: ServerRequests
  #acks = new Acks()
  #presence: PresenceTracker
  #ops: ClusterOps

  constructor (options: ResolvedOptions, log: FastifyBaseLogger) {
    super()
    this.options = options
    this.#log = log
    this.adapter = options.adapter ?? new MemoryAdapter()
    this.#stats = new Stats(options.metrics)
    this.#defaultRoute = defaultRouteSettings(options)
    this.#heartbeat = new Heartbeat(options.heartbeat.interval, (conn, idle) => this.#timedOut(conn, idle))
    const { replayMessages, replayBytes, tokenTtl, maxDisconnect } = options.reconnect
    const store = this.adapter.resumeStore({ instanceId: this.instanceId, replayMessages, replayBytes, sweepEvery: Math.min(tokenTtl, 60_000), retention: maxDisconnect }, log)
    this.#resumption = new Resumption(options.reconnect, log, store, this.instanceId)
    this.#delivery = new Delivery(this.#registry, this.#rooms)
    this.#ops = new ClusterOps({
      instanceId: this.instanceId,
      adapter: this.adapter,
      timeout: options.cluster.timeout,
      connected: clientId => this.#registry.get(clientId) !== undefined,
      prepare: (message, target, volatile) => this.#resumption.prepare(message, target, volatile),
      deliver: (target, out) => {
        const result = this.#delivery.deliver(target, out)
        // a cluster.broadcast counts here as a broadcast does
        if (target.clientId === undefined) this.#stats.broadcast(result.failed)
        return this.#delivered(result)
      },
      apply: op => this.#apply(op)
    })
    this.cluster = new ClusterView(this.#registry, this.#rooms, this.adapter, this.#ops)
    this.#presence = new PresenceTracker(options.presence, {
      instanceId: this.instanceId,
      log: this.#log.child({ component: 'presence' }),
      publish: message => { this.adapter.publish(message) },
      remoteInstances: async () => await this.adapter.presence.remoteInstances(),
      members: room => this.#rooms.members(room),
      emit: event => {
        try {
          this.emit('presence', event)
        } catch (err) {
          this.#fail(err, undefined, "a 'presence' listener threw")
        }
      }
    })
    this.#host = {
      send: (conn, message, options) => deliverTo(conn, this.#resumption.prepare(message, { clientId: conn.id }, options?.volatile)) === undefined,
      logged: (conn, message) => {
        const target = { clientId: conn.id }
        const out = this.#resumption.prepareEncoded(message, target)
        deliverTo(conn, out)
        // and to the other instances' logs: the client may be resuming on one of them now
        this.adapter.publish(toCluster(target, out))
      },
      join: (conn, room) => this.#join(conn, room),
      leave: (conn, room) => this.#leave(conn, room),
      close: (conn, code, reason, why, extra) => this.#end(conn, code, reason, why, false, extra),
      dropped: () => this.#stats.dropped(),
      listenerFailed: (conn, err) => this.#fail(err, conn, 'message listener failed'),
      tooLarge: (conn, size) => this.#end(conn, CloseCode.MESSAGE_TOO_BIG, 'message too big', 'message_too_large', false, { size }),
      heartbeatPong: (conn, now) => this.#pong(conn, now),
      appPing: (conn, now) => {
        conn.lastSeen = now
        write(conn, { data: Buffer.from(`{"type":"pong","ts":${now}}`), binary: false }, true)
      },
      closed: (conn, code, reason) => this.#socketClosed(conn, code, reason),
      failed: (conn, err) => this.#socketFailed(conn, err),
      rateLimited: (conn, size) => this.#guard.rateLimited(conn, size),
      routeMessage: (conn, data, isBinary, redelivered) => this.#guard.route(conn, data, isBinary, redelivered),
      counted: (conn, upstream) => this.#acks.counted(conn, upstream),
      refreshAuth: (conn, data) => this.#guard.refresh(conn, data),
      request: (conn, type, data, options) => this.#requests.request(conn, type, data, options),
      response: (conn, data) => this.#requests.response(conn, data)
    }
    this.#guard = new InboundGuard({
      end: (conn, code, reason, why) => this.#end(conn, code, reason, why, false),
      fail: (err, conn, message) => this.#fail(err, conn, message),
      stats: this.#stats,
      log: this.#log
    })
    const guard = this.#guard
    this.#requests = new ServerRequests(this.instanceId, options.requests.timeout, {
      rejected: (conn, code, message, id) => { guard.rejected(conn, code, message, id) },
      forward: (instance, clientId, data) => { this.adapter.publish({ type: 'answer', instance, clientId, data }) },
      log: this.#log
    })
  }

  /** True from the start of a shutdown on: new connections are refused. */
  get draining (): boolean {
    return this.#shutdown !== undefined
  }

  /** @internal The heartbeat, for the plugin's onReady and onRoute. */
  get heartbeat (): Heartbeat {
    return this.#heartbeat
  }

  /** @internal Registry and route capacity, for the pre-upgrade check. */
  get registry (): Registry {
    return this.#registry
  }

  /** @internal Room membership, for the dashboard's member counts. */
  get rooms (): Rooms {
    return this.#rooms
  }

  /** Starts the heartbeat and the adapter; the plugin calls it in onReady. */
  async start (): Promise<void> {
    if (this.#started) return
    this.#started = true
    this.#heartbeat.start()
    const log = this.#log.child({ adapter: this.adapter.name })
    // delivery first: the presence writes through the connection it made
    await this.adapter.start({ instanceId: this.instanceId, deliver: message => this.#deliverRemote(message), gap: info => this.#gap(info), log })
    await this.adapter.presence.start({
      instanceId: this.instanceId,
      retention: this.options.reconnect.maxDisconnect,
      connections: () => this.#registry.connections(),
      userConnectionCount: userId => this.#registry.userConnections(userId).size,
      log
    })
    this.#presence.start()
  }

  // ---- registry -------------------------------------------------------------------------

  getActiveConnections (): string[] {
    return [...this.#registry.clientIds()]
  }

  getConnectionCount (): number {
    return this.#registry.size
  }

  getConnection (clientId: string): ManagedConnection | undefined {
    return this.#registry.get(clientId)
  }

  getUserConnections (userId: string): ManagedConnection[] {
    return [...this.#registry.userConnections(userId)]
  }

  isUserConnected (userId: string): boolean {
    return this.#registry.userConnections(userId).size > 0
  }

  getActiveUsers (): string[] {
    return [...this.#registry.userIds()]
  }

  /**
   * Who is in a presence room, over every instance: userId (or the clientId of a connection
   * without one) → the metas of that user's connections there.
   */
  async presence (room: string): Promise<Record<string, PresenceMeta[]>> {
    checkRoom(room)
    return this.#presence.users(room)
  }

  /** @internal A presence room's users, read in place: userId (or clientId) → its connections there. */
  presenceUsers (room: string): ReadonlyMap<string, ReadonlyMap<string, unknown>> {
    return this.#presence.present(room)
  }

  /** Iterates the connections without copying them. */
  connections (): IterableIterator<ManagedConnection> {
    return this.#registry.connections()
  }

  // ---- rooms ----------------------------------------------------------------------------

  join (clientId: string, room: string): boolean {
    return this.#join(this.#require(clientId), room)
  }

  leave (clientId: string, room: string): boolean {
    return this.#leave(this.#require(clientId), room)
  }

  getRooms (): string[] {
    return [...this.#rooms.names()]
  }

  getRoomMembers (room: string): string[] {
    const ids: string[] = []
    for (const conn of this.#rooms.members(room)) ids.push(conn.id)
    return ids
  }

  // ---- messaging ------------------------------------------------------------------------

  /** Sends to one client. False when it is not connected here (or not open). */
  send (clientId: string, message: OutboundMessage, options: SendOptions = {}): boolean {
    const target = { clientId }
    const out = this.#resumption.prepare(message, target, options.volatile)
    const result = this.#delivery.deliver(target, out)
    // not connected here: perhaps on another instance
    if (result.total === 0) this.adapter.publish(toCluster(target, out))
    return result.succeeded === 1
  }

  /** Sends to every connection of a user (devices, tabs). */
  sendToUser (userId: string, message: OutboundMessage, options: SendOptions = {}): BroadcastResult {
    const target = { userId }
    const out = this.#resumption.prepare(message, target, options.volatile)
    this.adapter.publish(toCluster(target, out))
    return this.#delivery.deliver(target, out)
  }

  /**
   * Sends to every connection, or to the members of `room`, except `exclude`.
   * The message is serialized once. Rejects with BroadcastFailedError when every
   * delivery failed, and with ShutdownError after a shutdown began.
   */
  async broadcast (message: OutboundMessage, options: BroadcastOptions = {}): Promise<BroadcastResult> {
    if (this.#shutdown !== undefined) throw new ShutdownError('broadcast refused')
    const rooms = options.room === undefined ? undefined : typeof options.room === 'string' ? [options.room] : options.room
    const exclude = options.exclude === undefined ? undefined : typeof options.exclude === 'string' ? [options.exclude] : [...new Set(options.exclude)]
    const target = { rooms, exclude }
    const out = this.#resumption.prepare(message, target, options.volatile)
    this.adapter.publish(toCluster(target, out))
    const result = this.#delivery.deliver(target, out)
    this.#stats.broadcast(result.failed)
    this.#log.debug({ total: result.total, succeeded: result.succeeded, failed: result.failed, rooms }, 'broadcast')
    if (result.total > 0 && result.succeeded === 0) {
      const err = new BroadcastFailedError(result.total) as InstanceType<typeof BroadcastFailedError> & { result: BroadcastResult }
      err.result = result
      throw err
    }
    return result
  }

  // ---- reconnect tokens -----------------------------------------------------------------

  /**
   * A signed, single-use token that lets a client come back as `clientId` (with the
   * userId of its current connection, if it is connected here). Never logged.
   */
  generateReconnectToken (clientId: string): string {
    return this.#resumption.generateToken(clientId, this.#registry.get(clientId)?.userId)
  }

  /**
   * Checks a token and uses it up. Rejects with TokenExpiredError when it has expired,
   * InvalidTokenError when it is malformed, tampered with, signed with an unknown secret
   * or used before, AdapterUnavailableError when the store of used tokens cannot answer.
   */
  async validateReconnectToken (token: string): Promise<ReconnectClaims> {
    return await this.#resumption.validateToken(token)
  }

  /**
   * @internal A resume's token check before the upgrade: as `validateReconnectToken`, with a
   * claim held by another instance's upgrade in flight tried again (see `ClaimRetry`).
   */
  async validateResumeToken (token: string, retry: ClaimRetry): Promise<ReconnectClaims> {
    return await this.#resumption.validateToken(token, retry)
  }

  /** @internal A looked-up resume whose upgrade never happened: see `Resumption.giveBack`. */
  abandonResume (used: UsedToken, session: Session, log: FastifyBaseLogger): void {
    log.info({ clientId: session.clientId }, 'websocket resume abandoned before the upgrade: its token and session are given back')
    this.#resumption.giveBack(used, session)
  }

  /**
   * @internal The session a valid token resumes, taken before the upgrade. When the store
   * cannot answer, the client gets a fresh session (`unavailable`), never a wait or a crash.
   */
  async lookupSession (claims: ReconnectClaims, offset: number, route: RouteSettings): Promise<PendingResume> {
    try {
      const pending = await this.#resumption.lookup(claims, offset, route, this.#registry.get(claims.clientId))
      const liveOn = pending.session?.liveOn
      // still open on another instance (half-open there): that connection is replaced
      if (liveOn !== undefined) this.adapter.publish({ type: 'disconnect', clientId: claims.clientId, code: CloseCode.REPLACED, reason: 'replaced by a new connection' })
      return pending
    } catch (err) {
      this.#fail(err, undefined, 'resume store failed')
      return { offset, failed: 'unavailable' }
    }
  }

  // ---- lifecycle ------------------------------------------------------------------------

  /**
   * Closes a client's connection (close frame, then terminate after closeTimeout).
   * True when it was connected here; otherwise the other instances are asked to close it.
   */
  disconnect (clientId: string, code: number = CloseCode.NORMAL, reason = ''): boolean {
    const conn = this.#registry.get(clientId)
    if (conn === undefined) {
      this.adapter.publish({ type: 'disconnect', clientId, code, reason })
      return false
    }
    this.#end(conn, code, reason, 'server_disconnect', false)
    return true
  }

  /**
   * @internal The user's connections on the other instances, for the per-user limit, asked
   * before the upgrade. When the adapter cannot answer, only this instance counts.
   */
  async connectionsElsewhere (userId: string): Promise<number> {
    try {
      return await this.adapter.presence.remoteUserConnections(userId)
    } catch (err) {
      this.#log.warn({ err }, 'per-user connection count of the other instances unknown: counting this instance only')
      return 0
    }
  }

  /** Readiness: `draining` during shutdown, `degraded` while the other instances cannot be reached. */
  health (): { status: 'ok' | 'degraded' | 'draining', connections: number, adapter: AdapterHealth } {
    const adapter = this.adapter.health()
    const status = this.draining ? 'draining' : adapter.status === 'up' ? 'ok' : 'degraded'
    return { status, connections: this.#registry.size, adapter }
  }

  /** Records a heartbeat answer for flows that handle pongs themselves. False when unknown. */
  handlePong (clientId: string): boolean {
    const conn = this.#registry.get(clientId)
    if (conn === undefined) return false
    this.#pong(conn, Date.now())
    return true
  }

  /**
   * Manages a socket that did not come through a managed route. Throws
   * ConnectionLimitExceededError over a limit, ShutdownError while shutting down.
   */
  register (socket: WebSocket, options: RegisterOptions = {}): ManagedConnection {
    if (this.#shutdown !== undefined) throw new ShutdownError('connection refused')
    const identity = normalizeIdentity(options)
    if (typeof identity === 'string') throw new WebSocketStabilizerError(identity)
    const route = options.rooms === undefined ? this.#defaultRoute : { ...this.#defaultRoute, rooms: options.rooms }
    const refusal = this.#refusal(identity, route, 0)
    if (refusal !== undefined) {
      this.#stats.rejected(refusal.reason)
      throw new ConnectionLimitExceededError(refusal.message)
    }
    return this.attach(socket, { identity, route })
  }

  /**
   * @internal Registers an upgraded socket. Over a limit, or during shutdown, the socket
   * is closed with the matching code and the returned connection is already closed,
   * never registered.
   */
  attach (socket: WebSocket, pending: PendingConnection): ManagedConnection {
    const { identity: fresh, route, request, resume } = pending
    const log = request === undefined ? this.#log : this.options.logLevel === undefined ? request.log : request.log.child({}, { level: this.options.logLevel })
    if (pending.refused !== undefined) return this.#refuseAuth(socket, fresh, route, log, pending.refused)
    let restored = resume === undefined ? undefined : this.#resumption.restore(fresh, route, resume)
    let upstream
    if (pending.numbered === true) {
      const every = ackThreshold(pending.window)
      if (restored?.identity !== undefined) {
        // a half-open connection still here has the exact count; otherwise the session's
        const live = this.#registry.get(restored.identity.clientId)?.[kUpstream]
        upstream = continueCount(live === undefined ? restored.received ?? 0 : delivered(live), live === undefined && restored.uncertain === true, resume!.sent!, every)
        if (upstream === undefined) restored = { failed: 'invalid' }
      }
      upstream ??= freshCount(every)
    }
    const identity = restored?.identity ?? fresh
    const conn = new ManagedConnection(this.#host, socket, identity, route, log)
    conn[kUpstream] = upstream
    if (restored?.identity !== undefined) conn[kGeneration] = restored.generation! + 1
    if (request !== undefined) {
      conn.ip = request.ip
      conn.principal = pending.principal
      if (route.routed || route.auth !== undefined) conn[kRequest] = request
    }
    const elsewhere = pending.elsewhere ?? 0
    const refusal = this.#refusal(identity, route, elsewhere, conn.ip)
    if (refusal !== undefined) {
      this.#stats.rejected(refusal.reason)
      conn[kMarkClosing]()
      conn[kMarkClosed]({ code: refusal.code, reason: refusal.message, disconnectReason: refusal.reason, durationMs: 0, rooms: [] })
      conn.log.warn({ code: refusal.code, reason: refusal.reason }, `websocket refused: ${refusal.message}`)
      safeClose(socket, refusal.code, refusal.message)
      return conn
    }
    const replacing = this.#registry.get(identity.clientId)
    if (replacing !== undefined) this.#end(replacing, CloseCode.REPLACED, 'replaced by a new connection', 'replaced', false)
    attachListeners(socket, conn)
    this.#registry.add(conn)
    route.connections++
    this.#heartbeat.add(conn)
    for (const room of route.rooms) this.#rooms.join(conn, room)
    if (restored?.rooms !== undefined) for (const room of restored.rooms) this.#rooms.join(conn, room)
    if (route.presence !== undefined) for (const room of conn.rooms) this.#presence.joined(conn, room)
    this.adapter.presence.connected(conn)
    const expiresAt = conn.principal?.expiresAt
    if (expiresAt !== undefined) this.#guard.expiries.set(conn, expiresAt)
    if (route.reconnect !== undefined) this.#resumption.welcome(conn, restored)
    this.#stats.connected()
    conn.log.info({ route: route.url, rooms: conn.rooms.size > 0 ? [...conn.rooms] : undefined, resumed: restored?.rooms !== undefined ? true : undefined }, 'websocket connected')
    this.#emit('connect', conn)
    return conn
  }

  /**
   * Closes every connection with `closeCode` and waits for them, at most `timeout` ms;
   * the ones that did not answer are terminated. Refuses new connections from the start.
   * Calling it again returns the same report.
   */
  gracefulShutdown (options: ShutdownOptions = {}): Promise<ShutdownReport> {
    this.#shutdown ??= this.#drain({ ...this.options.shutdown, ...options })
    return this.#shutdown
  }

  /** @internal Counts a connection refused before the upgrade. */
  refused (why: RejectReason): void {
    this.#stats.rejected(why)
  }

  /** @internal A route handler threw or rejected: log it with the connection and close with 1011. */
  handlerFailed (conn: ManagedConnection, err: unknown): void {
    this.#fail(err, conn, 'websocket handler failed')
    this.#end(conn, CloseCode.INTERNAL_ERROR, 'internal error', 'handler_error', false)
  }

  /** Counters and gauges; see StatsSnapshot. */
  getStats (): StatsSnapshot {
    return this.#stats.snapshot(this.#registry.size, this.#registry.userCount, this.#rooms.size, this.#registry.connections())
  }

  /** One connection's counters, round trip, send buffer and rooms; undefined when it is not connected here. */
  getConnectionStats (clientId: string): ConnectionStatsSnapshot | undefined {
    const conn = this.#registry.get(clientId)
    return conn === undefined ? undefined : connectionStats(conn, Date.now())
  }

  /** The sums over a user's connections on this instance (zero connections when none). */
  getUserStats (userId: string): UserStatsSnapshot {
    return userStats(userId, this.#registry.userConnections(userId))
  }

  // ---- internals ------------------------------------------------------------------------

  async #drain (options: Required<ShutdownOptions>): Promise<ShutdownReport> {
    const started = Date.now()
    const sockets: WebSocket[] = []
    let failed = 0
    const batch = options.batchSize === 0 ? Infinity : options.batchSize
    // in batches: the connections not closed yet keep their heartbeat and what other instances send them
    for (;;) {
      const before = this.#registry.size
      let n = 0
      // a closed connection leaves the registry at once, so each batch starts from its head
      for (const conn of this.#registry.connections()) {
        if (n++ === batch) break
        if (!this.#end(conn, options.closeCode, options.closeReason, 'server_shutdown', false)) failed++
        sockets.push(conn.socket)
      }
      // what write coalescing holds, close frames included, goes out now
      flushWindows()
      // (a registry that did not shrink holds nothing this loop can end)
      if (this.#registry.size === 0 || this.#registry.size >= before) break
      await sleep(options.batchInterval)
    }
    this.#heartbeat.stop()
    // pending cluster ops settle now (partial broadcasts), new ones are refused
    this.#ops.close()
    const { clean, terminated } = await awaitClosed(sockets, options.timeout)
    // the presence of the connections that may resume elsewhere goes out before the adapter closes
    this.#presence.close()
    this.#resumption.close()
    this.#acks.close()
    // the presence first: its last writes go out before the broker ends the connections
    for (const part of [this.adapter.presence, this.adapter]) {
      try {
        await part.close()
      } catch (err) {
        this.#fail(err, undefined, 'adapter close failed')
      }
    }
    const report = { closedCount: clean, terminatedCount: terminated, failedCount: failed, durationMs: Date.now() - started }
    this.#log.info(report, 'websocket shutdown complete')
    return report
  }

  /** @internal Makes the replay log; called for each route that replays. */
  useReplay (): void {
    this.#resumption.useReplay()
  }

  /** @internal A route with presence: this instance takes part in it. */
  usePresence (): void {
    this.#presence.use()
  }

  /** @internal A route with typed `messages`: its data messages go to this router. */
  useRouter (route: RouteSettings, router: MessageRouter): void {
    this.#guard.routers.set(route, router)
  }

  /** `auth.reject: 'close'`: the upgraded socket gets an error frame and 4401/4403, and is never registered. */
  #refuseAuth (socket: WebSocket, identity: ResolvedIdentity, route: RouteSettings, log: FastifyBaseLogger, failure: AuthFailure): ManagedConnection {
    const conn = new ManagedConnection(this.#host, socket, identity, route, log)
    const [code, why, name] = failure.status === 401 ? [CloseCode.UNAUTHORIZED, 'unauthorized', 'UNAUTHORIZED'] as const : [CloseCode.FORBIDDEN, 'forbidden', 'FORBIDDEN'] as const
    this.#stats.rejected(why)
    write(conn, { data: errorFrame(name, failure.message), binary: false }, true)
    conn[kMarkClosing]()
    conn[kMarkClosed]({ code, reason: failure.message, disconnectReason: why, durationMs: 0, rooms: [] })
    conn.log.warn({ code, reason: why }, `websocket refused: ${failure.message}`)
    safeClose(socket, code, failure.message.slice(0, 120))
    return conn
  }

  #refusal (identity: ResolvedIdentity, route: RouteSettings, elsewhere: number, ip?: string): Refusal | undefined {
    if (this.#shutdown !== undefined) return { reason: 'server_shutdown', code: this.options.shutdown.closeCode, message: 'server shutting down' }
    return checkConnectionLimits({
      registry: this.#registry,
      route,
      maxConnections: this.options.limits.maxConnections,
      userId: identity.userId,
      replacing: this.#registry.get(identity.clientId),
      elsewhere,
      ip,
      maxPerIp: this.options.limits.maxConnectionsPerIp
    })
  }

  #require (clientId: string): ManagedConnection {
    const conn = this.#registry.get(clientId)
    if (conn === undefined) throw new ConnectionNotFoundError(clientId)
    return conn
  }

  #join (conn: ManagedConnection, room: string): boolean {
    checkRoom(room)
    if (!conn.isOpen || !this.#rooms.join(conn, room)) return false
    this.adapter.presence.roomsChanged(conn)
    this.#presence.joined(conn, room)
    conn.log.debug({ room }, 'joined room')
    this.#emit('join', conn, room)
    return true
  }

  #leave (conn: ManagedConnection, room: string): boolean {
    checkRoom(room)
    if (!this.#rooms.leave(conn, room)) return false
    if (conn.isOpen) this.adapter.presence.roomsChanged(conn)
    this.#presence.left(conn, room)
    conn.log.debug({ room }, 'left room')
    this.#emit('leave', conn, room)
    return true
  }

  /** A message from another instance: logged here too (with this log's offset), then delivered. */
  #deliverRemote (message: ClusterMessage): void {
    if (message.type === 'op' || message.type === 'result') {
      this.#ops.receive(message)
      return
    }
    if (message.type === 'presence') {
      this.#presence.receive(message)
      return
    }
    if (message.type === 'answer') {
      if (message.instance === this.instanceId) this.#requests.forwarded(message.clientId, message.data)
      return
    }
    if (message.type === 'disconnect') {
      const conn = this.#registry.get(message.clientId)
      if (conn !== undefined) this.#end(conn, message.code, message.reason, message.code === CloseCode.REPLACED ? 'replaced' : 'server_disconnect', false)
      return
    }
    const target = targetOf(message)
    const out = this.#resumption.prepareEncoded({ data: message.data, binary: message.binary, json: message.json }, target, message.volatile, message.id)
    this.#delivery.deliver(target, out)
  }

  /** A cluster op on this instance's connections: a delivery as #deliverRemote makes it, or a change of one client. */
  #apply (op: ClusterOp): ClusterCounts {
    if (op.type === 'broadcast' || op.type === 'client') {
      const target = targetOf(op)
      const out = this.#resumption.prepareEncoded({ data: op.data, binary: op.binary, json: op.json }, target, op.volatile, op.id)
      return this.#delivered(this.#delivery.deliver(target, out))
    }
    const conn = this.#registry.get(op.clientId)
    if (conn === undefined) return { total: 0, succeeded: 0, failed: 0 }
    if (op.type === 'disconnect') this.#end(conn, op.code, op.reason, 'server_disconnect', false)
    else if (op.type === 'join') this.#join(conn, op.room)
    else this.#leave(conn, op.room)
    return { total: 1, succeeded: 1, failed: 0 }
  }

  /** A delivery's counts, without the clientIds of the failures. */
  #delivered (result: BroadcastResult): ClusterCounts {
    return { total: result.total, succeeded: result.succeeded, failed: result.failed }
  }

  #gap (info: GapInfo): void {
    this.#log.warn(info, 'messages between instances may have been lost')
    this.#presence.resync()
    try {
      this.emit('gap', info)
    } catch (err) {
      this.#fail(err, undefined, "a 'gap' listener threw")
    }
  }

  #pong (conn: ManagedConnection, now: number): void {
    conn.lastSeen = now
    if (conn[kPingSentAt] === 0) return
    conn.rtt = now - conn[kPingSentAt]
    conn[kPingSentAt] = 0
    this.#stats.rtt(conn.rtt)
  }

  #timedOut (conn: ManagedConnection, idleMs: number): void {
    this.#stats.heartbeatTimeout()
    conn.log.warn({ err: new ConnectionTimeoutError(conn.id, idleMs), idleMs }, 'websocket heartbeat timeout')
    this.#end(conn, 1006, 'heartbeat timeout', 'heartbeat_timeout', true)
  }

  /**
   * The one way a connection ends, whoever ends it: it leaves every index at once
   * (so nothing is sent to it any more), then its socket is closed or terminated.
   */
  #end (conn: ManagedConnection, code: number, reason: string, why: DisconnectReason, terminate: boolean, extra?: object): boolean {
    if (!conn[kMarkClosing]()) return true
    this.#cleanup(conn, code, reason, why, extra)
    if (!terminate) return safeClose(conn.socket, code, reason)
    conn.socket.terminate()
    return true
  }

  #socketClosed (conn: ManagedConnection, code: number, reason: string): void {
    const error = conn[kSocketError]
    conn[kMarkClosing]()
    if (error === undefined) {
      // 1006: the peer vanished without a close frame
      this.#cleanup(conn, code, reason, code === 1006 ? 'network_error' : 'client_close')
      return
    }
    // ws emits only its own protocol errors on the socket (network errors it handles by
    // destroying it), closes with the error's code and stops reading: report that code
    this.#cleanup(conn, sentCloseCode(error), reason, isTooLarge(error) ? 'message_too_large' : 'protocol_error')
  }

  #socketFailed (conn: ManagedConnection, err: Error): void {
    conn[kSocketError] ??= err
    conn.log[errorLevel(err)]({ err }, 'websocket error')
  }

  /** Runs once per connection: indexes, counters, the disconnect line and event. */
  #cleanup (conn: ManagedConnection, code: number, reason: string, why: DisconnectReason, extra?: object): void {
    if (conn.disconnectInfo !== undefined) return
    this.#registry.remove(conn)
    if (conn.principal?.expiresAt !== undefined) this.#guard.expiries.delete(conn)
    const rooms = this.#rooms.leaveAll(conn)
    this.#presence.ended(conn, rooms, holdFor(conn, code, why))
    this.#heartbeat.delete(conn)
    if (conn[kUpstream] !== undefined) this.#acks.delete(conn)
    conn.route.connections--
    // held behind the app's fragmented message that never ended: accepted, never written
    if (conn[kHeld] !== undefined) {
      const undelivered = discardHeld(conn)
      this.#stats.undelivered(undelivered)
      extra = { ...extra, undelivered }
    }
    const info: DisconnectInfo = { code, reason, disconnectReason: why, durationMs: Date.now() - conn[kConnectedAt], rooms }
    this.#stats.disconnected(why, conn.stats)
    if (conn.route.reconnect !== undefined && why !== 'replaced') {
      // a close frame from the client is hearing from it too (see Resumption.saveSession)
      if (why === 'client_close') conn[kHandshake] = undefined
      this.#resumption.saveSession(conn, rooms)
    }
    // after the session is saved: a resume elsewhere that looks for it between the two finds either
    this.adapter.presence.disconnected(conn)
    conn[kMarkClosed](info)
    this.#requests.ended(conn, code, why)
    conn.log.info({ ...extra, code, reason, disconnectReason: why, durationMs: info.durationMs, ...conn.stats }, 'websocket disconnected')
    this.#emit('disconnect', conn, info)
  }

  /** Emits to the app's listeners; one that throws is reported, never thrown into a socket's event. */
  #emit<E extends 'connect' | 'disconnect' | 'join' | 'leave'> (event: E, ...args: WsManagerEvents[E]): void {
    try {
      this.emit(event, ...args as never)
    } catch (err) {
      this.#fail(err, args[0], `a '${event}' listener threw`)
    }
  }

  #fail (err: unknown, conn: ManagedConnection | undefined, message: string): void {
    const error = err instanceof Error ? err : new WebSocketStabilizerError(String(err))
    ;(conn?.log ?? this.#log).error({ err: error }, message)
    if (this.listenerCount('error') === 0) return
    try {
      this.emit('error', error, conn)
    } catch (again) {
      this.#log.error({ err: again }, "an 'error' listener threw")
    }
  }
}

/** How long a connection that ended is kept in its presence rooms for its resume; 0: it left. */
function holdFor (conn: ManagedConnection, code: number, why: DisconnectReason): number {
  const reconnect = conn.route.reconnect
  if (reconnect === undefined) return 0
  // a client that closes with 1000, 1001 (a page going away) or no code (1005) means to go
  const mayResume = why === 'network_error' || why === 'heartbeat_timeout' || why === 'server_shutdown' || (why === 'client_close' && code !== CloseCode.NORMAL && code !== CloseCode.GOING_AWAY && code !== 1005)
  return mayResume ? reconnect.maxDisconnect : 0
}

function checkRoom (room: unknown): void {
  if (typeof room !== 'string' || room === '') throw new WebSocketStabilizerError(`Expected a room name to be a non-empty string, got \`${String(room)}\``)
}

/** Closes with a code; when ws refuses the code (1005, 1006…) it terminates and returns false. */
function safeClose (socket: WebSocket, code: number, reason: string): boolean {
  try {
    socket.close(code, reason)
    return true
  } catch {
    socket.terminate()
    return false
  }
}
