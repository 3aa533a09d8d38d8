import type { WsAdapter } from './adapters/adapter.ts'
import type { ClusterBroadcastOptions, ClusterBroadcastResult, ClusterOpOptions, ClusterOps, ClusterSendOptions } from './cluster-ops.ts'
import type { OutboundMessage } from './outbound/encode.ts'
import { AdapterUnavailableError } from './errors.ts'
import type { Registry } from './registry.ts'
import type { Rooms } from './rooms.ts'

/*
 * `wsManager.cluster`: the same questions as the manager's own getters, answered for
 * every instance together (this one from memory, the others through the adapter's presence). With
 * the in-memory adapter alone they give the same answers as the getters. When the adapter
 * cannot answer (Redis is unreachable), each rejects with AdapterUnavailableError naming
 * the call, the adapter's error as its `cause`. The operations (`send`, `join`, `leave`,
 * `disconnect`, `broadcast`) act on clients wherever they are: cluster-ops.ts.
 */
export class ClusterView {
  #registry: Registry
  #rooms: Rooms
  #adapter: WsAdapter
  #ops: ClusterOps

  constructor (registry: Registry, rooms: Rooms, adapter: WsAdapter, ops: ClusterOps) {
    this.#registry = registry
    this.#rooms = rooms
    this.#adapter = adapter
    this.#ops = ops
  }

  /**
   * Sends to one client on whichever instance it is: true when that instance delivered it,
   * false when no instance has it. Logged for replay as `send` is.
   */
  async send (clientId: string, message: OutboundMessage, options?: ClusterSendOptions): Promise<boolean> {
    return await this.#ops.send(clientId, message, options)
  }

  /** Puts a client in a room on whichever instance it is; resolves to whether it was found. */
  async join (clientId: string, room: string, options?: ClusterOpOptions): Promise<boolean> {
    return await this.#ops.join(clientId, room, options)
  }

  /** Takes a client out of a room on whichever instance it is; resolves to whether it was found. */
  async leave (clientId: string, room: string, options?: ClusterOpOptions): Promise<boolean> {
    return await this.#ops.leave(clientId, room, options)
  }

  /** Closes a client's connection on whichever instance it is; resolves to whether it was found. */
  async disconnect (clientId: string, code?: number, reason?: string, options?: ClusterOpOptions): Promise<boolean> {
    return await this.#ops.disconnect(clientId, code, reason, options)
  }

  /**
   * `broadcast` with exact counts: every live instance delivers to its own connections and
   * reports; `partial` when some did not answer within the timeout.
   */
  async broadcast (message: OutboundMessage, options?: ClusterBroadcastOptions): Promise<ClusterBroadcastResult> {
    return await this.#ops.broadcast(message, options)
  }

  async getConnectionCount (): Promise<number> {
    return this.#registry.size + (await this.#remote('getConnectionCount()')).length
  }

  async getActiveUsers (): Promise<string[]> {
    return await this.#activeUsers('getActiveUsers()')
  }

  async getUserCount (): Promise<number> {
    return (await this.#activeUsers('getUserCount()')).length
  }

  async isUserConnected (userId: string): Promise<boolean> {
    return await this.#userConnections(userId, 'isUserConnected()') > 0
  }

  async getUserConnectionCount (userId: string): Promise<number> {
    return await this.#userConnections(userId, 'getUserConnectionCount()')
  }

  /** The clientIds of the room's connections, on every instance. */
  async getRoomMembers (room: string): Promise<string[]> {
    const ids: string[] = []
    for (const conn of this.#rooms.members(room)) ids.push(conn.id)
    for (const conn of await this.#remote('getRoomMembers()')) {
      if (inRoom(conn.rooms, room)) ids.push(conn.id)
    }
    return ids
  }

  /** The distinct userIds of the room's connections, on every instance (connections without a userId are not counted). */
  async getRoomUsers (room: string): Promise<string[]> {
    const users = new Set<string>()
    for (const conn of this.#rooms.members(room)) {
      if (conn.userId !== undefined) users.add(conn.userId)
    }
    for (const conn of await this.#remote('getRoomUsers()')) {
      if (conn.userId !== undefined && inRoom(conn.rooms, room)) users.add(conn.userId)
    }
    return [...users]
  }

  async #activeUsers (call: string): Promise<string[]> {
    const users = new Set(this.#registry.userIds())
    for (const conn of await this.#remote(call)) {
      if (conn.userId !== undefined) users.add(conn.userId)
    }
    return [...users]
  }

  async #userConnections (userId: string, call: string): Promise<number> {
    const local = this.#registry.userConnections(userId).size
    return local + await this.#adapter.presence.remoteUserConnections(userId).catch(this.#unavailable(call))
  }

  async #remote (call: string): ReturnType<WsAdapter['presence']['remoteConnections']> {
    return await this.#adapter.presence.remoteConnections().catch(this.#unavailable(call))
  }

  #unavailable (call: string): (err: unknown) => never {
    return (err) => { throw new AdapterUnavailableError(this.#adapter.name, `cluster.${call}`, String(err), { cause: err }) }
  }
}

function inRoom (rooms: Iterable<string>, room: string): boolean {
  for (const name of rooms) {
    if (name === room) return true
  }
  return false
}
