import type { ManagedConnection } from './connection.ts'
import { kRooms } from './symbols.ts'

/**
 * Room membership: room → connections, and on each connection the set of its rooms
 * (the reverse index), so leaving every room on disconnect costs O(rooms of that
 * connection). Empty rooms are deleted. Sets hold connection objects, not ids, so
 * a replaced connection leaving its rooms never touches its replacement. A connection's
 * own set is made when it joins its first room: most connections of many apps never do.
 */
export class Rooms {
  #rooms = new Map<string, Set<ManagedConnection>>()

  get size (): number {
    return this.#rooms.size
  }

  join (conn: ManagedConnection, room: string): boolean {
    const rooms = conn[kRooms] ??= new Set()
    if (rooms.has(room)) return false
    let members = this.#rooms.get(room)
    if (members === undefined) {
      members = new Set()
      this.#rooms.set(room, members)
    }
    members.add(conn)
    rooms.add(room)
    return true
  }

  leave (conn: ManagedConnection, room: string): boolean {
    if (conn[kRooms]?.delete(room) !== true) return false
    const members = this.#rooms.get(room)
    if (members !== undefined) {
      members.delete(conn)
      if (members.size === 0) this.#rooms.delete(room)
    }
    return true
  }

  /** Takes the connection out of every room; returns the rooms it left. */
  leaveAll (conn: ManagedConnection): string[] {
    const rooms = conn[kRooms]
    if (rooms === undefined) return []
    const left = [...rooms]
    for (const room of left) this.leave(conn, room)
    return left
  }

  members (room: string): ReadonlySet<ManagedConnection> {
    return this.#rooms.get(room) ?? EMPTY
  }

  names (): IterableIterator<string> {
    return this.#rooms.keys()
  }
}

const EMPTY: ReadonlySet<ManagedConnection> = new Set()
