/*
 * The client's copy of its rooms' presence (PROTOCOL.md, "Presence"): a `presence.state`
 * gives a room's whole map, each `presence.diff` after it the metas that came and went. A
 * diff that comes before the room's state is held and applied after it, as Phoenix's client
 * does. Past the room's cap the server sends the user count only: the map is then unknown.
 */

/** One connection of a user in a room. */
export interface PresenceMeta {
  readonly clientId: string
  readonly metadata: Record<string, unknown>
}

/** What the client knows of a room. */
export interface RoomPresence {
  readonly room: string
  /** How many users are in it. */
  readonly count: number
  /** userId (or a connection's clientId when it has none) → its connections; undefined past the room's cap. */
  readonly users: Readonly<Record<string, readonly PresenceMeta[]>> | undefined
}

/** The `presence` event: the room after a state or a diff, with the users that joined and left by it. */
export interface PresenceChange extends RoomPresence {
  readonly joins: string[]
  readonly leaves: string[]
}

type Users = Record<string, PresenceMeta[]>

interface Frame {
  type: 'presence.state' | 'presence.diff'
  room: string
  users?: Users
  joins?: Users
  leaves?: Users
  count?: number
}

const STATE = '{"type":"presence.state"'
const DIFF = '{"type":"presence.diff"'

export class ClientPresence {
  #rooms = new Map<string, { count: number, users: Users | undefined }>()
  #held = new Map<string, Frame[]>()

  get (room: string): RoomPresence | undefined {
    const known = this.#rooms.get(room)
    return known === undefined ? undefined : { room, count: known.count, users: known.users }
  }

  /**
   * A frame of the server: undefined when it is not a presence frame, otherwise the changes it
   * made (none for a diff that waits for its state), or why it could not be read.
   */
  take (text: string): PresenceChange[] | string | undefined {
    if (!text.startsWith(STATE) && !text.startsWith(DIFF)) return undefined
    let frame: Frame
    try {
      frame = JSON.parse(text) as Frame
    } catch {
      return 'a presence frame that is not JSON'
    }
    if (!valid(frame)) return `a presence frame without a room, users, joins and leaves or a count: ${text.slice(0, 100)}`
    if (frame.type === 'presence.diff') {
      if (!this.#rooms.has(frame.room)) {
        const held = this.#held.get(frame.room)
        if (held === undefined) this.#held.set(frame.room, [frame])
        else held.push(frame)
        return []
      }
      return [this.#diff(frame)]
    }
    const changes = [this.#state(frame)]
    for (const diff of this.#held.get(frame.room) ?? []) changes.push(this.#diff(diff))
    this.#held.delete(frame.room)
    return changes
  }

  #state (frame: Frame): PresenceChange {
    const before = this.#rooms.get(frame.room)?.users ?? {}
    if (frame.users === undefined) return this.#set(frame.room, frame.count!, undefined, [], [])
    const users: Users = Object.assign(Object.create(null), frame.users)
    const joins = Object.keys(users).filter(key => !Object.hasOwn(before, key))
    const leaves = Object.keys(before).filter(key => !Object.hasOwn(users, key))
    return this.#set(frame.room, Object.keys(users).length, users, joins, leaves)
  }

  #diff (frame: Frame): PresenceChange {
    const known = this.#rooms.get(frame.room)!
    if (frame.joins === undefined || known.users === undefined) return this.#set(frame.room, frame.count ?? known.count, undefined, [], [])
    const users = known.users
    const touched = new Map<string, boolean>()
    for (const [key, metas] of Object.entries(frame.leaves!)) {
      touched.set(key, Object.hasOwn(users, key))
      const gone = new Set(metas.map(meta => meta.clientId))
      const left = (users[key] ?? []).filter(meta => !gone.has(meta.clientId))
      if (left.length > 0) users[key] = left
      else delete users[key]
    }
    for (const [key, metas] of Object.entries(frame.joins)) {
      if (!touched.has(key)) touched.set(key, Object.hasOwn(users, key))
      const added = new Set(metas.map(meta => meta.clientId))
      users[key] = [...(users[key] ?? []).filter(meta => !added.has(meta.clientId)), ...metas]
    }
    const joins: string[] = []
    const leaves: string[] = []
    for (const [key, was] of touched) {
      const is = Object.hasOwn(users, key)
      if (!was && is) joins.push(key)
      else if (was && !is) leaves.push(key)
    }
    return this.#set(frame.room, Object.keys(users).length, users, joins, leaves)
  }

  #set (room: string, count: number, users: Users | undefined, joins: string[], leaves: string[]): PresenceChange {
    this.#rooms.set(room, { count, users })
    return { room, count, users, joins, leaves }
  }
}

function valid (frame: Frame): boolean {
  if (typeof frame !== 'object' || frame === null || typeof frame.room !== 'string') return false
  if (typeof frame.count === 'number') return true
  if (frame.type === 'presence.state') return isUsers(frame.users)
  return isUsers(frame.joins) && isUsers(frame.leaves)
}

function isUsers (value: unknown): boolean {
  return typeof value === 'object' && value !== null && Object.values(value).every(metas => Array.isArray(metas) && metas.every(meta => typeof meta?.clientId === 'string'))
}
