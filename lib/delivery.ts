import type { ManagedConnection } from './connection.ts'
import type { Registry } from './registry.ts'
import type { Rooms } from './rooms.ts'
import type { Target } from './resume/replay-log.ts'
import { write } from './outbound/write.ts'
import type { Encoded } from './outbound/encode.ts'
import { envelope } from './resume/protocol.ts'
import type { ClusterMessage } from './adapters/adapter.ts'

/*
 * The one delivery path, for messages sent here and messages from other instances alike
 * (socket.io-adapter's `apply(opts, cb)`): a target — one client, one user's connections,
 * the members of some rooms, or every connection, less `exclude` — is resolved once on
 * this instance's indexes, then one loop writes to each connection the frame its route
 * wants. Nothing is copied per recipient: the message was encoded once, its envelope is
 * made once, on first need, and the loop walks the indexes themselves (a set is made only
 * for the union of several rooms).
 */

/** A message encoded once, with its protocol frame (made on first need). */
export interface Outgoing {
  plain: Encoded
  framed: Encoded | undefined
  /** Its id in the logs, when it was logged. */
  id?: string
  /** Sent as volatile: never logged, and the first to go for a slow consumer. */
  volatile?: boolean
}

/** The outcome of a delivery to many connections. */
export interface BroadcastResult {
  /** Connections targeted on this instance. */
  total: number
  succeeded: number
  failed: number
  /** `[clientId, why]` for each failed delivery. */
  errors: Array<[string, string]>
}

export class Delivery {
  #registry: Registry
  #rooms: Rooms

  constructor (registry: Registry, rooms: Rooms) {
    this.#registry = registry
    this.#rooms = rooms
  }

  /** Writes `out` to every connection of this instance that `target` names. */
  deliver (target: Target, out: Outgoing): BroadcastResult {
    const result: BroadcastResult = { total: 0, succeeded: 0, failed: 0, errors: [] }
    const exclude = target.exclude === undefined ? undefined : new Set(target.exclude)
    for (const conn of this.#resolve(target)) {
      if (exclude?.has(conn.id) === true) continue
      result.total++
      const error = deliverTo(conn, out)
      if (error === undefined) {
        result.succeeded++
      } else {
        result.failed++
        result.errors.push([conn.id, error])
      }
    }
    return result
  }

  /** The connections a target names: an index as it is, or one set for a union of rooms. */
  #resolve (target: Target): Iterable<ManagedConnection> {
    if (target.clientId !== undefined) {
      const conn = this.#registry.get(target.clientId)
      return conn === undefined ? NONE : [conn]
    }
    if (target.userId !== undefined) return this.#registry.userConnections(target.userId)
    const rooms = target.rooms
    if (rooms === undefined) return this.#registry.connections()
    if (rooms.length === 1) return this.#rooms.members(rooms[0])
    const union = new Set<ManagedConnection>()
    for (const room of rooms) for (const conn of this.#rooms.members(room)) union.add(conn)
    return union
  }
}

/** Writes a message to one connection, as its route frames it; undefined when handed to the socket, or why not. */
export function deliverTo (conn: ManagedConnection, out: Outgoing): string | undefined {
  return write(conn, frameFor(conn, out), false, out.volatile)
}

/** What a connection gets: the envelope on protocol routes, the plain message elsewhere. */
export function frameFor (conn: ManagedConnection, out: Outgoing): Encoded {
  if (conn.route.reconnect === undefined) return out.plain
  out.framed ??= { data: envelope(out.plain, undefined), binary: false }
  return out.framed
}

/** The target a message from another instance names. */
export function targetOf (message: Exclude<ClusterMessage, { type: 'disconnect' | 'answer' | 'op' | 'result' | 'presence' }>): Target {
  if (message.type === 'client') return { clientId: message.clientId }
  if (message.type === 'user') return { userId: message.userId }
  return { rooms: message.rooms, exclude: message.exclude }
}

/** What goes to the other instances: the target, and the message encoded once, sent as it is. */
export function toCluster (target: Target, out: Outgoing): ClusterMessage {
  const { data, binary, json } = out.plain
  const payload = out.volatile === true ? { data, binary, json, volatile: true } : { data, binary, json, id: out.id }
  if (target.clientId !== undefined) return { type: 'client', clientId: target.clientId, ...payload }
  if (target.userId !== undefined) return { type: 'user', userId: target.userId, ...payload }
  return { type: 'broadcast', rooms: target.rooms, exclude: target.exclude, ...payload }
}

const NONE: readonly ManagedConnection[] = []
