import type { ManagedConnection } from '../connection.ts'
import type { WsManager } from '../manager.ts'
import type { AdapterHealth, GapInfo, InstanceInfo, PresenceEntry } from '../adapters/adapter.ts'
import type { OutboundMessage } from '../outbound/encode.ts'
import type { StatsSnapshot } from '../stats.ts'
import type { ClusterBroadcastResult } from '../cluster-ops.ts'

/*
 * Everything the dashboard reads and does, in one place: what it shows comes from here, what
 * it does goes through here. The actions go through `wsManager.cluster`: each is done on the
 * connection wherever it is, and answers what happened (found or not, delivered or not, the
 * counts of every instance). The presence of rooms is read from the tracker's map, without
 * copying it.
 */

/** What the dashboard knows of a connection on another instance. */
export type RemoteConnection = PresenceEntry

export interface DashboardSource {
  readonly instanceId: string
  readonly adapterName: string
  stats (): StatsSnapshot
  health (): AdapterHealth
  draining (): boolean
  /** This instance's connections, oldest first (the registry's order), never copied. */
  connections (): Iterable<ManagedConnection>
  connection (clientId: string): ManagedConnection | undefined
  userConnections (userId: string): Iterable<ManagedConnection>
  roomMembers (room: string): ReadonlySet<ManagedConnection>
  /** Every room of this instance with its member count. */
  rooms (): Iterable<[room: string, members: number]>
  /** The other instances' connections, from the adapter's presence. */
  remoteConnections (): Promise<RemoteConnection[]>
  /** The other instances; empty when the presence cannot tell. */
  instances (): Promise<InstanceInfo[]>
  /** The users present in a presence room (every instance): userId → that user's connections there; empty when none. */
  presence (room: string): ReadonlyMap<string, ReadonlyMap<string, unknown>>
  /** Closes a connection wherever it is: whether some instance had it. */
  disconnect (clientId: string, code: number, reason: string): Promise<boolean>
  /** Closes a user's connections wherever they are: how many were found and closed. */
  disconnectUser (userId: string, code: number, reason: string): Promise<number>
  /** Sends to one connection wherever it is: whether it was delivered. */
  send (clientId: string, message: OutboundMessage): Promise<boolean>
  /** Sends to a room's members on every instance: the sums of every instance's counts. */
  sendToRoom (room: string, message: OutboundMessage): Promise<ClusterBroadcastResult>
  /** Listens to the adapter's gaps; returns the removal. */
  onGap (listener: (info: GapInfo) => void): () => void
}

/** The dashboard's source over the manager. */
export function managerSource (manager: WsManager): DashboardSource {
  const presence = manager.adapter.presence
  return {
    instanceId: manager.instanceId,
    adapterName: manager.adapter.name,
    stats: () => manager.getStats(),
    health: () => manager.adapter.health(),
    draining: () => manager.draining,
    connections: () => manager.connections(),
    connection: clientId => manager.getConnection(clientId),
    userConnections: userId => manager.registry.userConnections(userId),
    roomMembers: room => manager.rooms.members(room),
    * rooms () {
      const rooms = manager.rooms
      for (const room of rooms.names()) yield [room, rooms.members(room).size]
    },
    remoteConnections: async () => await presence.remoteConnections(),
    // issue 15's cluster view may answer this too; the presence is what exists now
    instances: async () => await presence.instances?.() ?? [],
    presence: room => manager.presenceUsers(room),
    disconnect: async (clientId, code, reason) => await manager.cluster.disconnect(clientId, code, reason),
    async disconnectUser (userId, code, reason) {
      let closed = 0
      for (const conn of [...manager.registry.userConnections(userId)]) {
        if (manager.disconnect(conn.id, code, reason)) closed++
      }
      // the other instances' connections of that user, each closed by its clientId wherever it is
      const elsewhere: Array<Promise<boolean>> = []
      for (const entry of await presence.remoteConnections()) {
        if (entry.userId === userId) elsewhere.push(manager.cluster.disconnect(entry.id, code, reason))
      }
      for (const found of await Promise.all(elsewhere)) if (found) closed++
      return closed
    },
    send: async (clientId, message) => await manager.cluster.send(clientId, message),
    sendToRoom: async (room, message) => await manager.cluster.broadcast(message, { room }),
    onGap (listener) {
      manager.on('gap', listener)
      return () => { manager.off('gap', listener) }
    }
  }
}
