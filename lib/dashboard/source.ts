import type { ManagedConnection } from '../connection.ts'
import type { WsManager } from '../manager.ts'
import type { AdapterHealth, GapInfo, InstanceInfo, PresenceEntry } from '../adapters/adapter.ts'
import type { OutboundMessage } from '../outbound/encode.ts'
import type { StatsSnapshot } from '../stats.ts'

/*
 * Everything the dashboard reads and does, in one place: what it shows comes from here, what
 * it does goes through here. Today the actions on a connection elsewhere go through the
 * manager's own cross-instance paths (a `disconnect` or a client message published to every
 * instance); when `wsManager.cluster.send/disconnect` and the presence of rooms arrive, the
 * methods below are where they plug in, nothing else of the dashboard changes.
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
  /** Closes a connection here, or asks the other instances to. True when it was here. */
  disconnect (clientId: string, code: number, reason: string): boolean
  /** Closes a user's connections here and asks the other instances to close theirs; how many were asked to close. */
  disconnectUser (userId: string, code: number, reason: string): Promise<number>
  /** Sends to one connection, here or on another instance. True when it was here and written. */
  send (clientId: string, message: OutboundMessage): boolean
  /** Sends to a room's members on every instance; how many were reached here. */
  sendToRoom (room: string, message: OutboundMessage): Promise<number>
  /** Listens to the adapter's gaps; returns the removal. */
  onGap (listener: (info: GapInfo) => void): () => void
}

/** The dashboard's source over the manager as it is today. */
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
    // with cluster.disconnect (issue 15): `manager.cluster.disconnect(clientId, code, reason)`
    disconnect: (clientId, code, reason) => manager.disconnect(clientId, code, reason),
    async disconnectUser (userId, code, reason) {
      let asked = 0
      for (const conn of [...manager.registry.userConnections(userId)]) {
        manager.disconnect(conn.id, code, reason)
        asked++
      }
      // the other instances' connections of that user, each asked by its clientId
      for (const entry of await presence.remoteConnections()) {
        if (entry.userId !== userId) continue
        manager.disconnect(entry.id, code, reason)
        asked++
      }
      return asked
    },
    // with cluster.send (issue 15): `manager.cluster.send(clientId, message)`
    send: (clientId, message) => manager.send(clientId, message),
    sendToRoom: async (room, message) => (await manager.broadcast(message, { room })).succeeded,
    onGap (listener) {
      manager.on('gap', listener)
      return () => { manager.off('gap', listener) }
    }
  }
}
