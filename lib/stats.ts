import type { ConnectionStats, DisconnectReason, ManagedConnection } from './connection.ts'
import { kConnectedAt } from './symbols.ts'

/** Why an upgrade was refused. */
export type RejectReason = 'connection_limit' | 'user_limit' | 'ip_limit' | 'origin' | 'unauthorized' | 'forbidden' | 'server_shutdown'

/** Why an inbound message was refused (the `code` of the error frame the client gets). */
export type InboundRejection = 'RATE_LIMITED' | 'INVALID_JSON' | 'INVALID_MESSAGE' | 'UNKNOWN_TYPE' | 'VALIDATION_FAILED' | 'BINARY_NOT_ALLOWED' | 'UNKNOWN_REQUEST'

/** Upper bounds (ms) of the round-trip histogram buckets. */
export const RTT_BUCKETS = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000] as const

/** One connection's figures: `wsManager.getConnectionStats(clientId)`. */
export interface ConnectionStatsSnapshot extends ConnectionStats {
  clientId: string
  userId: string | undefined
  route: string
  connectedAt: Date
  durationMs: number
  /** The last heartbeat round trip, ms; undefined before the first. */
  rttMs: number | undefined
  /** Bytes waiting in its send buffer now. */
  bufferedBytes: number
  rooms: string[]
}

/** One user's figures over all their connections on this instance: `wsManager.getUserStats(userId)`. */
export interface UserStatsSnapshot extends ConnectionStats {
  userId: string
  connections: number
  /** Since the oldest of those connections. */
  connectedSince: Date | undefined
  rooms: string[]
}

/** Adds a connection's message and byte counters to `total`. */
function addTo (total: ConnectionStats, stats: ConnectionStats): void {
  total.messagesIn += stats.messagesIn
  total.messagesOut += stats.messagesOut
  total.bytesIn += stats.bytesIn
  total.bytesOut += stats.bytesOut
}

/** The figures of one open connection. */
export function connectionStats (conn: ManagedConnection, now: number): ConnectionStatsSnapshot {
  return {
    clientId: conn.id,
    userId: conn.userId,
    route: conn.route.url,
    connectedAt: conn.connectedAt,
    durationMs: now - conn[kConnectedAt],
    rttMs: conn.rtt,
    bufferedBytes: conn.socket.bufferedAmount,
    rooms: [...conn.rooms],
    ...conn.stats
  }
}

/** A user's figures: the sums of their open connections. */
export function userStats (userId: string, connections: Iterable<ManagedConnection>): UserStatsSnapshot {
  const result: UserStatsSnapshot = { userId, connections: 0, connectedSince: undefined, rooms: [], messagesIn: 0, messagesOut: 0, bytesIn: 0, bytesOut: 0 }
  const rooms = new Set<string>()
  for (const conn of connections) {
    result.connections++
    if (result.connectedSince === undefined || conn.connectedAt < result.connectedSince) result.connectedSince = conn.connectedAt
    addTo(result, conn.stats)
    for (const room of conn.rooms) rooms.add(room)
  }
  result.rooms = [...rooms]
  return result
}

export interface StatsSnapshot {
  /** Open connections, users with at least one, and non-empty rooms, on this instance. */
  connections: number
  users: number
  rooms: number
  /** Open connections by the route (URL pattern) they came in on. */
  connectionsByRoute: Record<string, number>
  connectsTotal: number
  disconnectsTotal: Partial<Record<DisconnectReason, number>>
  rejectedTotal: Partial<Record<RejectReason, number>>
  /** Volatile messages dropped for slow consumers. */
  droppedTotal: number
  /** Inbound messages refused: rate limited, invalid JSON, unknown type, failed validation, binary where text is expected. */
  inboundRejectedTotal: Partial<Record<InboundRejection, number>>
  broadcastsTotal: number
  failedDeliveriesTotal: number
  heartbeatTimeoutsTotal: number
  /** Data messages and bytes, both directions, of closed and open connections. */
  messagesIn: number
  messagesOut: number
  bytesIn: number
  bytesOut: number
  /** Heartbeat round trips; only with `metrics: true`. */
  latency?: { count: number, sumMs: number, buckets: Array<[le: number, count: number]> }
}

/**
 * Counters kept per event (connect, disconnect, broadcast, timeout), never per
 * message: message totals are the connections' own counters, added up when read.
 * With metrics on, heartbeat round trips also go into a histogram.
 */
export class Stats {
  #connects = 0
  #disconnects: Partial<Record<DisconnectReason, number>> = {}
  #rejected: Partial<Record<RejectReason, number>> = {}
  #dropped = 0
  #inbound: Partial<Record<InboundRejection, number>> = {}
  #broadcasts = 0
  #failedDeliveries = 0
  #timeouts = 0
  #closed: ConnectionStats = { messagesIn: 0, messagesOut: 0, bytesIn: 0, bytesOut: 0 }
  #rtt: { count: number, sumMs: number, counts: number[] } | undefined

  constructor (metrics: boolean) {
    this.#rtt = metrics ? { count: 0, sumMs: 0, counts: RTT_BUCKETS.map(() => 0) } : undefined
  }

  connected (): void {
    this.#connects++
  }

  disconnected (why: DisconnectReason, stats: ConnectionStats): void {
    this.#disconnects[why] = (this.#disconnects[why] ?? 0) + 1
    addTo(this.#closed, stats)
  }

  rejected (why: RejectReason): void {
    this.#rejected[why] = (this.#rejected[why] ?? 0) + 1
  }

  dropped (): void {
    this.#dropped++
  }

  inboundRejected (why: InboundRejection): void {
    this.#inbound[why] = (this.#inbound[why] ?? 0) + 1
  }

  broadcast (failed: number): void {
    this.#broadcasts++
    this.#failedDeliveries += failed
  }

  /** Messages accepted for a connection that closed before they could be written. */
  undelivered (count: number): void {
    this.#failedDeliveries += count
  }

  heartbeatTimeout (): void {
    this.#timeouts++
  }

  rtt (ms: number): void {
    const h = this.#rtt
    if (h === undefined) return
    h.count++
    h.sumMs += ms
    const i = RTT_BUCKETS.findIndex(le => ms <= le)
    if (i !== -1) h.counts[i]++
  }

  snapshot (connections: number, users: number, rooms: number, open: Iterable<ManagedConnection>): StatsSnapshot {
    const totals = { ...this.#closed }
    const byRoute: Record<string, number> = {}
    for (const conn of open) {
      byRoute[conn.route.url] = (byRoute[conn.route.url] ?? 0) + 1
      addTo(totals, conn.stats)
    }
    const snapshot: StatsSnapshot = {
      connections,
      users,
      rooms,
      connectionsByRoute: byRoute,
      connectsTotal: this.#connects,
      disconnectsTotal: { ...this.#disconnects },
      rejectedTotal: { ...this.#rejected },
      droppedTotal: this.#dropped,
      inboundRejectedTotal: { ...this.#inbound },
      broadcastsTotal: this.#broadcasts,
      failedDeliveriesTotal: this.#failedDeliveries,
      heartbeatTimeoutsTotal: this.#timeouts,
      ...totals
    }
    const h = this.#rtt
    if (h !== undefined) {
      // cumulative, as Prometheus histograms are
      const buckets: Array<[number, number]> = []
      let cumulative = 0
      for (let i = 0; i < RTT_BUCKETS.length; i++) {
        cumulative += h.counts[i]
        buckets.push([RTT_BUCKETS[i], cumulative])
      }
      snapshot.latency = { count: h.count, sumMs: h.sumMs, buckets }
    }
    return snapshot
  }
}
