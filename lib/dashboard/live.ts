import type { FastifyBaseLogger } from 'fastify'
import type { WebSocket, RawData } from 'ws'
import type { InstanceInfo } from '../adapters/adapter.ts'
import { Sampler, type ClusterSummary, type Snapshot } from './snapshot.ts'
import { RemoteConnections, RowRates, queryKey, tablePage, tableQuery, type TableQuery } from './table.ts'
import type { DashboardSource } from './source.ts'
import type { OutboundMessage } from '../outbound/encode.ts'
import { presencePage, presenceQuery, type PresenceQuery } from './presence.ts'

/*
 * The open dashboards: one interval timer (unref'd) for all of them, made when the app is
 * ready and cleared when it closes. Each tick takes one point of the plot; while dashboards
 * are open it also makes one snapshot, serialized once and written to each of them, and one
 * page of the table per distinct query (dashboards that ask the same share it). Nothing is
 * done per message of the app. The other instances are asked through the presence, never
 * waited on by the tick: their answer goes into a later one.
 */

export interface LiveOptions {
  interval: number
  history: number
  readOnly: boolean
}

interface Viewer {
  socket: WebSocket
  /** Who acts through it, for the action log lines. */
  actor: string
  query: TableQuery
  /** The room whose present users it shows, if any. */
  presence: PresenceQuery | undefined
}

/** A dashboard whose socket holds more than this is skipped until it drained. */
const SLOW_VIEWER_BYTES = 1_048_576
/** The other instances' connections are read every this many ticks (the instance list every tick). */
const REMOTE_EVERY = 5
const CLOSE_CODE = /^(1000|[34]\d{3})$/

interface ActionMessage {
  id?: unknown
  action?: unknown
  clientId?: unknown
  userId?: unknown
  room?: unknown
  code?: unknown
  reason?: unknown
  message?: unknown
  json?: unknown
}

export class LiveDashboards {
  readonly #source: DashboardSource
  readonly #options: LiveOptions
  readonly #log: FastifyBaseLogger
  readonly #sampler: Sampler
  readonly #viewers = new Map<WebSocket, Viewer>()
  readonly #rates = new RowRates()
  #timer: NodeJS.Timeout | undefined = undefined
  #removeGap: (() => void) | undefined = undefined
  #ticks = 0
  #remote = new RemoteConnections([])
  #others: InstanceInfo[] = []
  #clusterError: string | undefined = undefined
  #asking = false

  constructor (source: DashboardSource, options: LiveOptions, log: FastifyBaseLogger) {
    this.#source = source
    this.#options = options
    this.#log = log
    this.#sampler = new Sampler(source, options.history)
  }

  /** In the app's onReady, once. */
  start (): void {
    this.#removeGap = this.#source.onGap(info => { this.#sampler.gap(info) })
    this.#timer = setInterval(() => { this.tick() }, this.#options.interval).unref()
    this.tick()
  }

  /** Clears the timer and closes the dashboards still open. */
  close (): void {
    clearInterval(this.#timer)
    this.#timer = undefined
    this.#removeGap?.()
    this.#removeGap = undefined
    for (const socket of this.#viewers.keys()) socket.close(1001, 'server closing')
    this.#viewers.clear()
  }

  /** A dashboard's socket, opened with a ticket issued to `actor`. */
  open (socket: WebSocket, actor: string): void {
    const viewer: Viewer = { socket, actor, query: tableQuery({}), presence: undefined }
    this.#viewers.set(socket, viewer)
    socket.on('message', (data, isBinary) => { this.#message(viewer, data, isBinary) })
    socket.on('close', () => { this.#viewers.delete(socket) })
    socket.on('error', (err) => { this.#log.debug({ err }, 'dashboard socket error') })
    this.#log.info({ actor, readOnly: this.#options.readOnly }, 'dashboard opened')
    socket.send(JSON.stringify({
      type: 'hello',
      instance: this.#source.instanceId,
      readOnly: this.#options.readOnly,
      interval: this.#options.interval,
      historySize: this.#options.history,
      history: this.#sampler.history
    }))
  }

  /** One tick: a point of the plot always; the snapshot and the tables when dashboards are open. */
  tick (now = Date.now()): void {
    if (this.#viewers.size === 0) {
      this.#sampler.sample(now)
      return
    }
    const snapshot = this.#sampler.snapshot(now)
    snapshot.cluster = this.#cluster(now, snapshot.stats.connections)
    const frame = JSON.stringify(snapshot)
    this.#rates.tick()
    const pages = new Map<string, string>()
    for (const viewer of this.#viewers.values()) {
      if (viewer.socket.readyState !== 1 || viewer.socket.bufferedAmount > SLOW_VIEWER_BYTES) continue
      viewer.socket.send(frame)
      const key = queryKey(viewer.query)
      let page = pages.get(key)
      if (page === undefined) {
        page = JSON.stringify(tablePage(this.#source, viewer.query, this.#remote, now, this.#rates))
        pages.set(key, page)
      }
      viewer.socket.send(page)
      if (viewer.presence !== undefined) viewer.socket.send(JSON.stringify(presencePage(this.#source, viewer.presence)))
    }
    this.#ask(this.#ticks++ % REMOTE_EVERY === 0)
  }

  /** The instances: this one from its snapshot, the others as the presence last told. */
  #cluster (now: number, connections: number): ClusterSummary | undefined {
    const others = this.#others
    if (others.length === 0 && this.#source.adapterName === 'memory' && this.#clusterError === undefined) return undefined
    const self = { id: this.#source.instanceId, alive: true, connections, lastHeartbeat: now, self: true, health: this.#source.health().status }
    const instances = [self, ...others.map(i => ({ ...i, self: false, health: i.alive ? 'up' : 'gone (kept for resumes)' }))]
    let total = 0
    for (const i of instances) if (i.alive) total += i.connections
    const summary: ClusterSummary = { instances, connections: total }
    if (this.#clusterError !== undefined) summary.error = this.#clusterError
    return summary
  }

  /** Asks the presence for the other instances (and every few ticks their connections), for the next ticks. */
  #ask (connections: boolean): void {
    if (this.#asking) return
    this.#asking = true
    const source = this.#source
    source.instances().then(async (others) => {
      this.#others = others
      if (connections || others.length === 0) this.#remote = new RemoteConnections(others.length === 0 ? [] : await source.remoteConnections())
      this.#clusterError = undefined
    }).catch((err: unknown) => {
      this.#clusterError = String(err)
      this.#log.debug({ err }, 'dashboard: the other instances could not be asked')
    }).finally(() => { this.#asking = false })
  }

  #message (viewer: Viewer, data: RawData, isBinary: boolean): void {
    let message: ActionMessage & { type?: unknown }
    try {
      message = isBinary ? {} : JSON.parse(data.toString()) as typeof message
    } catch {
      message = {}
    }
    if (message === null || typeof message !== 'object') message = {}
    if (message.type === 'query') {
      viewer.query = tableQuery(message as Record<string, unknown>)
      viewer.socket.send(JSON.stringify(tablePage(this.#source, viewer.query, this.#remote, Date.now(), this.#rates)))
      return
    }
    if (message.type === 'presence') {
      viewer.presence = presenceQuery(message as Record<string, unknown>)
      if (viewer.presence !== undefined) viewer.socket.send(JSON.stringify(presencePage(this.#source, viewer.presence)))
      return
    }
    if (message.type === 'action') {
      this.#act(viewer, message).then(
        result => { this.#reply(viewer, message.id, result) },
        (err: Error) => { this.#reply(viewer, message.id, { ok: false, message: err.message }) }
      )
      return
    }
    this.#reply(viewer, undefined, { ok: false, message: 'expected a JSON message of type query, presence or action' })
  }

  #reply (viewer: Viewer, id: unknown, result: { ok: boolean, message: string }): void {
    if (viewer.socket.readyState === 1) viewer.socket.send(JSON.stringify({ type: 'result', id: typeof id === 'number' ? id : undefined, ...result }))
  }

  async #act (viewer: Viewer, m: ActionMessage): Promise<{ ok: boolean, message: string }> {
    const action = typeof m.action === 'string' ? m.action : ''
    const log = { actor: viewer.actor, action }
    if (this.#options.readOnly) {
      this.#log.warn(log, 'dashboard action refused: the dashboard is read-only')
      return { ok: false, message: 'the dashboard is read-only' }
    }
    const source = this.#source
    switch (action) {
      case 'disconnect':
      case 'disconnectUser': {
        const code = m.code === undefined || m.code === '' ? 1000 : Number(m.code)
        if (!CLOSE_CODE.test(String(code))) return { ok: false, message: `expected a close code 1000 or 3000-4999, got ${String(m.code)}` }
        const reason = typeof m.reason === 'string' ? m.reason : ''
        if (Buffer.byteLength(reason) > 123) return { ok: false, message: 'expected a close reason of at most 123 bytes' }
        if (action === 'disconnect') {
          const clientId = text(m.clientId, 'clientId')
          const found = await source.disconnect(clientId, code, reason)
          this.#log.info({ ...log, clientId, code, reason, found }, 'dashboard action: disconnect')
          return found ? { ok: true, message: `${clientId} disconnected` } : { ok: false, message: `${clientId} was not found on any instance` }
        }
        const userId = text(m.userId, 'userId')
        const closed = await source.disconnectUser(userId, code, reason)
        this.#log.info({ ...log, userId, code, reason, connections: closed }, 'dashboard action: disconnect a user')
        return { ok: true, message: `${closed} connection(s) of ${userId} disconnected` }
      }
      case 'send':
      case 'sendRoom': {
        const payload = outbound(m)
        if (action === 'send') {
          const clientId = text(m.clientId, 'clientId')
          const delivered = await source.send(clientId, payload)
          this.#log.info({ ...log, clientId, delivered }, 'dashboard action: send')
          return delivered ? { ok: true, message: `delivered to ${clientId}` } : { ok: false, message: `${clientId} was not found on any instance, or its write failed` }
        }
        const room = text(m.room, 'room')
        const r = await source.sendToRoom(room, payload)
        this.#log.info({ ...log, room, ...r }, 'dashboard action: send to a room')
        const answered = r.partial ? `; only ${r.answered} of ${r.instances} instances answered in time` : ''
        return { ok: !r.partial, message: `sent to room ${room}: ${r.succeeded} of ${r.total} delivered over ${r.answered} instance(s)${answered}` }
      }
      default:
        return { ok: false, message: `unknown action ${JSON.stringify(action)}` }
    }
  }
}

function text (value: unknown, name: string): string {
  if (typeof value !== 'string' || value === '') throw new Error(`expected ${name} to be a non-empty string`)
  return value
}

/** The message to send: the text as it is, or the JSON value it holds with `json: true`. */
function outbound (m: ActionMessage): OutboundMessage {
  if (typeof m.message !== 'string') throw new Error('expected message to be a string')
  if (m.json !== true) return m.message
  try {
    return JSON.parse(m.message) as OutboundMessage
  } catch {
    throw new Error('expected message to be JSON text')
  }
}

export type { Snapshot }
