import type { WsAdapter } from './adapters/adapter.ts'
import type { Registry } from './registry.ts'
import type { Rooms } from './rooms.ts'

/*
 * `wsManager.cluster`: the same questions as the manager's own getters, answered for
 * every instance together (this one from memory, the others through the adapter). With
 * the in-memory adapter alone they give the same answers as the getters.
 */
export class ClusterView {
  #registry: Registry
  #rooms: Rooms
  #adapter: WsAdapter

  constructor (registry: Registry, rooms: Rooms, adapter: WsAdapter) {
    this.#registry = registry
    this.#rooms = rooms
    this.#adapter = adapter
  }

  async getConnectionCount (): Promise<number> {
    return this.#registry.size + (await this.#adapter.remoteConnections()).length
  }

  async getActiveUsers (): Promise<string[]> {
    const users = new Set(this.#registry.userIds())
    for (const conn of await this.#adapter.remoteConnections()) {
      if (conn.userId !== undefined) users.add(conn.userId)
    }
    return [...users]
  }

  async getUserCount (): Promise<number> {
    return (await this.getActiveUsers()).length
  }

  async isUserConnected (userId: string): Promise<boolean> {
    return await this.getUserConnectionCount(userId) > 0
  }

  async getUserConnectionCount (userId: string): Promise<number> {
    return this.#registry.userConnections(userId).size + await this.#adapter.remoteUserConnections(userId)
  }

  async getRoomMembers (room: string): Promise<string[]> {
    const ids: string[] = []
    for (const conn of this.#rooms.members(room)) ids.push(conn.id)
    for (const conn of await this.#adapter.remoteConnections()) {
      for (const name of conn.rooms) {
        if (name === room) ids.push(conn.id)
      }
    }
    return ids
  }
}
