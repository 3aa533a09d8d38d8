/*
 * Who is in each presence room, over every instance: room → user → the metas of that user's
 * connections (Phoenix Presence's map). Every instance keeps the whole map: its own
 * connections' entries, and the others' from their changes (tracker.ts). An entry belongs to
 * the instance that holds the connection, and carries the session's generation, so that
 * whatever order the changes of two instances arrive in, the newer connection of a client
 * wins and a stale leave removes nothing. A held entry (the connection dropped, it may
 * resume) still counts until its time.
 *
 * Changes are collected per room until the tracker flushes (`take`): what was added and
 * removed, net (a leave and a join of the same connection within one batch cancel out), and
 * each touched user's connection count before the batch, so that a user joins when the first
 * connection comes and leaves when the last one goes.
 */

/** One connection in a room, as members see it. */
export interface PresenceMeta {
  readonly clientId: string
  readonly metadata: Record<string, unknown>
}

/** A user that joined or left a room (its first connection came, its last one went). */
export interface PresenceUser {
  /** The userId; a connection without one is a user of its own, under its clientId. */
  readonly userId: string
  /** Joins: the user's metas now; leaves: the metas that went. */
  readonly metas: PresenceMeta[]
}

export interface Entry {
  readonly room: string
  readonly key: string
  readonly meta: PresenceMeta
  readonly instance: string
  readonly generation: number
  /** When a held entry goes (ms since the epoch); 0: not held. */
  heldUntil: number
}

interface Room {
  /** key → clientId → entry */
  users: Map<string, Map<string, Entry>>
  clients: Map<string, Entry>
}

/** What changed in a room since the last flush. */
export interface Batch {
  /** Touched users' connection counts before the batch. */
  before: Map<string, number>
  /** The room's user count before the batch. */
  count: number
  added: Map<string, Entry>
  removed: Map<string, Entry>
}

/** A room's changes, ready to send. */
export interface RoomChange {
  readonly room: string
  /** Metas that came and went, by user (what clients apply to their map). */
  readonly joins: Map<string, PresenceMeta[]>
  readonly leaves: Map<string, PresenceMeta[]>
  /** Users that joined or left. */
  readonly joined: PresenceUser[]
  readonly left: PresenceUser[]
  readonly countBefore: number
  readonly count: number
}

export class PresenceState {
  #rooms = new Map<string, Room>()
  #batches = new Map<string, Batch>()

  /** The room's users with their metas (do not change it). */
  users (room: string): ReadonlyMap<string, Map<string, Entry>> {
    return this.#rooms.get(room)?.users ?? NOBODY
  }

  get (room: string, clientId: string): Entry | undefined {
    return this.#rooms.get(room)?.clients.get(clientId)
  }

  /** Every entry (snapshots and sweeps); do not change the state while iterating. */
  * entries (): IterableIterator<Entry> {
    for (const room of this.#rooms.values()) yield * room.clients.values()
  }

  /**
   * Puts an entry in unless the room has a newer one of the same client. Returns the entry
   * it replaced (or undefined), or false when it was not put in.
   */
  put (entry: Entry): Entry | undefined | false {
    let room = this.#rooms.get(entry.room)
    const old = room?.clients.get(entry.meta.clientId)
    if (old !== undefined && old.generation > entry.generation) return false
    if (room === undefined) {
      room = { users: new Map(), clients: new Map() }
      this.#rooms.set(entry.room, room)
    }
    const batch = this.#batch(entry.room, room)
    if (old !== undefined) this.#out(room, batch, old)
    this.#touch(room, batch, entry.key)
    let metas = room.users.get(entry.key)
    if (metas === undefined) {
      metas = new Map()
      room.users.set(entry.key, metas)
    }
    metas.set(entry.meta.clientId, entry)
    room.clients.set(entry.meta.clientId, entry)
    const removed = batch.removed.get(entry.meta.clientId)
    if (removed !== undefined && removed.key === entry.key && sameMeta(removed.meta, entry.meta)) batch.removed.delete(entry.meta.clientId)
    else batch.added.set(entry.meta.clientId, entry)
    return old
  }

  /** Takes the entry out, if it is still the room's entry of its client. */
  remove (entry: Entry): boolean {
    const room = this.#rooms.get(entry.room)
    if (room === undefined || room.clients.get(entry.meta.clientId) !== entry) return false
    this.#out(room, this.#batch(entry.room, room), entry)
    if (room.clients.size === 0) this.#rooms.delete(entry.room)
    return true
  }

  #out (room: Room, batch: Batch, entry: Entry): void {
    this.#touch(room, batch, entry.key)
    const metas = room.users.get(entry.key)!
    metas.delete(entry.meta.clientId)
    if (metas.size === 0) room.users.delete(entry.key)
    room.clients.delete(entry.meta.clientId)
    const added = batch.added.get(entry.meta.clientId)
    if (added === entry) batch.added.delete(entry.meta.clientId)
    else batch.removed.set(entry.meta.clientId, entry)
  }

  #batch (name: string, room: Room): Batch {
    let batch = this.#batches.get(name)
    if (batch === undefined) {
      batch = { before: new Map(), count: room.users.size, added: new Map(), removed: new Map() }
      this.#batches.set(name, batch)
    }
    return batch
  }

  #touch (room: Room, batch: Batch, key: string): void {
    if (!batch.before.has(key)) batch.before.set(key, room.users.get(key)?.size ?? 0)
  }

  /** The changes of every room since the last call, and a fresh batch. */
  * take (): IterableIterator<RoomChange> {
    const batches = this.#batches
    this.#batches = new Map()
    for (const [name, batch] of batches) yield this.#change(name, batch)
  }

  #change (name: string, batch: Batch): RoomChange {
    const room = this.#rooms.get(name)
    const joins = byUser(batch.added.values())
    const leaves = byUser(batch.removed.values())
    const joined: PresenceUser[] = []
    const left: PresenceUser[] = []
    for (const [key, before] of batch.before) {
      const now = room?.users.get(key)
      if (before === 0 && now !== undefined) joined.push({ userId: key, metas: metasOf(now) })
      else if (before > 0 && now === undefined) left.push({ userId: key, metas: leaves.get(key)! })
    }
    return { room: name, joins, leaves, joined, left, countBefore: batch.count, count: room?.users.size ?? 0 }
  }
}

const NOBODY: ReadonlyMap<string, Map<string, Entry>> = new Map()

export function metasOf (entries: Map<string, Entry>): PresenceMeta[] {
  const metas: PresenceMeta[] = []
  for (const entry of entries.values()) metas.push(entry.meta)
  return metas
}

function byUser (entries: Iterable<Entry>): Map<string, PresenceMeta[]> {
  const users = new Map<string, PresenceMeta[]>()
  for (const entry of entries) {
    const metas = users.get(entry.key)
    if (metas === undefined) users.set(entry.key, [entry.meta])
    else metas.push(entry.meta)
  }
  return users
}

function sameMeta (a: PresenceMeta, b: PresenceMeta): boolean {
  return a.metadata === b.metadata || JSON.stringify(a.metadata) === JSON.stringify(b.metadata)
}
