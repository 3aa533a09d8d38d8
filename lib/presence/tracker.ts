import type { FastifyBaseLogger } from 'fastify'
import type { ManagedConnection } from '../connection.ts'
import type { ClusterMessage } from '../adapters/adapter.ts'
import { Deadlines } from '../deadlines.ts'
import { write } from '../outbound/write.ts'
import { kGeneration } from '../symbols.ts'
import { PresenceState, metasOf, type Entry, type PresenceMeta, type PresenceUser, type RoomChange } from './state.ts'
import { diffFrame, joinChange, stateFrame, type PresenceChange } from './wire.ts'

/*
 * Room presence across instances (Phoenix Presence's semantics, over the adapter): each
 * instance tracks its own connections of presence routes in every room they are in,
 * publishes their changes to the others (one message per flush), and keeps the map of
 * everyone from theirs (state.ts). Changes are collected until the flush (`interval`), so a
 * room gets one diff per flush however many joined: each member gets one frame, serialized
 * once for all of them; a connection entering a room gets the state instead, after the
 * change that brought it. A connection that dropped and may resume is held for
 * `maxDisconnect`: every instance keeps it until then, so a resume, here or elsewhere, is
 * neither a leave nor a join. An instance that starts (or whose link was down: a gap) sends
 * its whole state and asks for the others'; an instance that died without a word is found by
 * the sweep (its presence expired) and its users leave.
 */

/** What `wsManager.on('presence')` gets: the users that joined and left a room, over every instance. */
export interface PresenceEvent {
  readonly room: string
  readonly joins: PresenceUser[]
  readonly leaves: PresenceUser[]
}

export interface PresenceTrackerOptions {
  /** ms changes are collected before they go out; 0: the end of the event-loop turn. */
  interval: number
  /** Past this many users, a room's members get its user count only. */
  maxMembers: number
  /** ms between checks for instances that are gone. */
  sweep: number
}

export interface PresenceTrackerHost {
  readonly instanceId: string
  readonly log: FastifyBaseLogger
  publish (message: ClusterMessage): void
  /** The live other instances (the adapter's presence). */
  remoteInstances (): Promise<string[]>
  /** This instance's connections in a room. */
  members (room: string): Iterable<ManagedConnection>
  emit (event: PresenceEvent): void
}

export class PresenceTracker {
  #options: PresenceTrackerOptions
  #host: PresenceTrackerHost
  #state = new PresenceState()
  #holds = new Deadlines<Entry>(entry => { this.#expire(entry) })
  /** This instance's changes since the last flush, for the others. */
  #outgoing: PresenceChange[] = []
  /** Connections that entered a room since the last flush: they get its state. */
  #newcomers = new Map<string, Set<ManagedConnection>>()
  /** Rooms whose members get the user count only. */
  #capped = new Set<string>()
  #timer: NodeJS.Timeout | NodeJS.Immediate | undefined = undefined
  #sweeper: NodeJS.Timeout | undefined = undefined
  #used = false
  #started = false
  #closed = false

  constructor (options: PresenceTrackerOptions, host: PresenceTrackerHost) {
    this.#options = options
    this.#host = host
  }

  /** A route with presence was registered: this instance takes part. */
  use (): void {
    this.#used = true
  }

  /** Asks the others for their state, and starts the sweep; nothing when no route has presence. */
  start (): void {
    if (!this.#used) return
    this.#started = true
    this.#sync('ask')
    this.#sweeper = setInterval(this.#sweep, this.#options.sweep).unref()
  }

  /** The link to the others was down: what went meanwhile may be lost, so both sides send everything again. */
  resync (): void {
    if (this.#started) this.#sync('ask')
  }

  /** The room's users with their metas, over every instance. */
  users (room: string): Record<string, PresenceMeta[]> {
    const users: Record<string, PresenceMeta[]> = {}
    for (const [key, entries] of this.#state.users(room)) users[key] = metasOf(entries)
    return users
  }

  /** @internal The room's users as the state holds them (the dashboard reads it each tick; do not change it). */
  present (room: string): ReadonlyMap<string, ReadonlyMap<string, Entry>> {
    return this.#state.users(room)
  }

  /** A connection entered a room. */
  joined (conn: ManagedConnection, room: string): void {
    const presence = conn.route.presence
    if (presence === undefined) return
    const entry: Entry = {
      room,
      key: conn.userId ?? conn.id,
      meta: { clientId: conn.id, metadata: shown(conn.metadata, presence.fields) },
      instance: this.#host.instanceId,
      generation: conn[kGeneration],
      heldUntil: 0
    }
    const old = this.#state.put(entry)
    // false: the client is already on another instance with a newer connection (this one is stale)
    if (old !== false) {
      if (old !== undefined) this.#holds.delete(old)
      this.#outgoing.push(joinChange(entry))
    }
    let newcomers = this.#newcomers.get(room)
    if (newcomers === undefined) {
      newcomers = new Set()
      this.#newcomers.set(room, newcomers)
    }
    newcomers.add(conn)
    this.#schedule()
  }

  /** A connection left a room (it is still connected). */
  left (conn: ManagedConnection, room: string): void {
    if (conn.route.presence === undefined) return
    this.#newcomers.get(room)?.delete(conn)
    this.#gone(conn, room)
    this.#schedule()
  }

  /** A connection ended, in these rooms: held for `holdMs` when it may resume (0: gone now). */
  ended (conn: ManagedConnection, rooms: readonly string[], holdMs: number): void {
    if (conn.route.presence === undefined || rooms.length === 0) return
    for (const room of rooms) {
      this.#newcomers.get(room)?.delete(conn)
      if (holdMs === 0) {
        this.#gone(conn, room)
        continue
      }
      const entry = this.#own(conn, room)
      if (entry === undefined) continue
      this.#hold(entry, holdMs)
      this.#outgoing.push(['h', room, conn.id, entry.generation, holdMs])
    }
    this.#schedule()
  }

  /** The connection's entry in the room, when it is still this instance's. */
  #own (conn: ManagedConnection, room: string): Entry | undefined {
    const entry = this.#state.get(room, conn.id)
    return entry?.instance === this.#host.instanceId && entry.generation === conn[kGeneration] ? entry : undefined
  }

  #gone (conn: ManagedConnection, room: string): void {
    const entry = this.#own(conn, room)
    if (entry === undefined) return
    this.#drop(entry)
    this.#outgoing.push(['l', room, conn.id, entry.generation])
  }

  #drop (entry: Entry): void {
    this.#state.remove(entry)
    if (entry.heldUntil > 0) this.#holds.delete(entry)
  }

  #hold (entry: Entry, ms: number): void {
    entry.heldUntil = Date.now() + ms
    this.#holds.set(entry, entry.heldUntil)
  }

  /** A held connection did not come back in time. */
  #expire (entry: Entry): void {
    if (this.#state.remove(entry)) this.#schedule()
  }

  /** Another instance's changes. */
  receive (message: Extract<ClusterMessage, { type: 'presence' }>): void {
    if (message.sync === undefined) {
      for (const change of message.changes) this.#apply(message.from, change)
    } else {
      this.#replace(message.from, message.changes)
      if (message.sync === 'ask' && this.#started) this.#sync('answer')
    }
    this.#schedule()
  }

  #apply (from: string, change: PresenceChange): void {
    if (change[0] === 'j') {
      const old = this.#state.put({ room: change[1], key: change[2], meta: { clientId: change[3], metadata: change[5] }, instance: from, generation: change[4], heldUntil: 0 })
      if (old !== undefined && old !== false && old.heldUntil > 0) this.#holds.delete(old)
      return
    }
    const entry = this.#state.get(change[1], change[2])
    // a change of a connection that is not (or no longer) the room's entry of that client changes nothing
    if (entry === undefined || entry.instance !== from || entry.generation > change[3]) return
    if (change[0] === 'l') this.#drop(entry)
    else this.#hold(entry, change[4])
  }

  /** A snapshot: everything `from` has; what it no longer has goes. */
  #replace (from: string, changes: PresenceChange[]): void {
    const had: Entry[] = []
    for (const entry of this.#state.entries()) if (entry.instance === from) had.push(entry)
    // each entry listed is put in again (a new object, the same meta: no diff); the ones still there were not listed
    for (const change of changes) this.#apply(from, change)
    for (const entry of had) this.#drop(entry)
  }

  /** Sends this instance's whole state (its held connections with the time they have left). */
  #sync (kind: 'ask' | 'answer'): void {
    const changes: PresenceChange[] = []
    const now = Date.now()
    const self = this.#host.instanceId
    for (const entry of this.#state.entries()) {
      if (entry.instance !== self) continue
      changes.push(joinChange(entry))
      if (entry.heldUntil > 0) changes.push(['h', entry.room, entry.meta.clientId, entry.generation, Math.max(1, entry.heldUntil - now)])
    }
    this.#host.publish({ type: 'presence', from: self, changes, sync: kind })
  }

  /** Takes out the users of instances that are gone (their presence expired), unless held. */
  #sweep = async (): Promise<void> => {
    const self = this.#host.instanceId
    let remote = false
    for (const entry of this.#state.entries()) {
      if (entry.instance !== self && entry.heldUntil === 0) {
        remote = true
        break
      }
    }
    if (!remote) return
    let live: Set<string>
    try {
      live = new Set(await this.#host.remoteInstances())
    } catch (err) {
      this.#host.log.debug({ err }, 'presence sweep: the instances could not be listed')
      return
    }
    const gone: Entry[] = []
    for (const entry of this.#state.entries()) if (entry.instance !== self && entry.heldUntil === 0 && !live.has(entry.instance)) gone.push(entry)
    for (const entry of gone) this.#drop(entry)
    if (gone.length > 0) this.#schedule()
  }

  #schedule (): void {
    if (this.#timer !== undefined || this.#closed) return
    this.#timer = this.#options.interval === 0 ? setImmediate(this.#flush) : setTimeout(this.#flush, this.#options.interval)
  }

  #flush = (): void => {
    this.#timer = undefined
    if (this.#outgoing.length > 0) {
      this.#host.publish({ type: 'presence', from: this.#host.instanceId, changes: this.#outgoing })
      this.#outgoing = []
    }
    for (const change of this.#state.take()) this.#deliver(change)
    for (const [room, newcomers] of this.#newcomers) this.#welcome(room, newcomers)
    this.#newcomers.clear()
  }

  /** A room's change to its members that had its state, and to the app. */
  #deliver (change: RoomChange): void {
    const was = this.#capped.has(change.room)
    const capped = this.#isCapped(change.room, change.count)
    let frame: Buffer | undefined
    if (capped) {
      if (!was) this.#capped.add(change.room)
      if (change.count !== change.countBefore) frame = diffFrame(change, true)
    } else if (was) {
      // well under the cap again: the map, whole
      this.#capped.delete(change.room)
      frame = stateFrame(change.room, this.#state.users(change.room), false)
    } else if (change.joins.size > 0 || change.leaves.size > 0) {
      frame = diffFrame(change, false)
    }
    if (frame !== undefined) {
      const newcomers = this.#newcomers.get(change.room)
      const message = { data: frame, binary: false }
      for (const conn of this.#host.members(change.room)) {
        if (conn.route.presence !== undefined && newcomers?.has(conn) !== true) write(conn, message, true)
      }
    }
    if (change.joined.length > 0 || change.left.length > 0) this.#host.emit({ room: change.room, joins: change.joined, leaves: change.left })
  }

  /**
   * Past `maxMembers` a room is capped; it gets its map again only at a tenth under the cap, so
   * that a room around its cap does not send the whole map to every member at each crossing.
   */
  #isCapped (room: string, count: number): boolean {
    const max = this.#options.maxMembers
    return count > max || (this.#capped.has(room) && count > max - Math.ceil(max / 10))
  }

  #welcome (room: string, newcomers: Set<ManagedConnection>): void {
    // (a newcomer that left the room, or ended, before the flush is no longer one)
    if (newcomers.size === 0) return
    const users = this.#state.users(room)
    const message = { data: stateFrame(room, users, this.#isCapped(room, users.size)), binary: false }
    for (const conn of newcomers) write(conn, message, true)
  }

  /** On fastify.close(), after the connections closed: what is left goes out now. */
  close (): void {
    if (this.#timer !== undefined) {
      if (this.#options.interval === 0) clearImmediate(this.#timer as NodeJS.Immediate)
      else clearTimeout(this.#timer as NodeJS.Timeout)
      this.#flush()
    }
    this.#closed = true
    this.#started = false
    clearInterval(this.#sweeper)
    this.#holds.stop()
  }
}

/** The metadata members see: all of it, or the route's fields. */
function shown (metadata: Record<string, unknown>, fields: readonly string[] | undefined): Record<string, unknown> {
  if (fields === undefined) return metadata
  const out: Record<string, unknown> = {}
  for (const field of fields) if (field in metadata) out[field] = metadata[field]
  return out
}
