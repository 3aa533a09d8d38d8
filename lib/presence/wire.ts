import { metasOf, type Entry, type PresenceMeta, type RoomChange } from './state.ts'

/*
 * Presence on the wire. To clients (PROTOCOL.md): `presence.state`, the whole map of a room
 * when a connection enters it, and `presence.diff`, the metas that came and went after; past
 * the room's cap both carry the user count only. Each is serialized once per room and flush,
 * for every member. Between instances: the changes of one flush, as compact arrays.
 */

/** A change of one instance's entries, as it goes to the others. */
export type PresenceChange =
  /** `[j, room, user, clientId, generation, metadata]`: a connection is in the room. */
  | ['j', string, string, string, number, Record<string, unknown>]
  /** `[l, room, clientId, generation]`: it is gone. */
  | ['l', string, string, number]
  /** `[h, room, clientId, generation, ms]`: it dropped and is kept that long for its resume. */
  | ['h', string, string, number, number]

export function joinChange (entry: Entry): PresenceChange {
  return ['j', entry.room, entry.key, entry.meta.clientId, entry.generation, entry.meta.metadata]
}

/** Whether decoded JSON is a list of changes (what another instance sent). */
export function isChanges (value: unknown): value is PresenceChange[] {
  return Array.isArray(value) && value.every(isChange)
}

function isChange (c: unknown): boolean {
  if (!Array.isArray(c) || typeof c[1] !== 'string' || typeof c[2] !== 'string') return false
  if (c[0] === 'j') return c.length === 6 && typeof c[3] === 'string' && typeof c[4] === 'number' && typeof c[5] === 'object' && c[5] !== null
  if (c[0] === 'l') return c.length === 4 && typeof c[3] === 'number'
  return c[0] === 'h' && c.length === 5 && typeof c[3] === 'number' && typeof c[4] === 'number'
}

/** `{"type":"presence.state","room":…,"users":{user:[meta…]}}`, or with `count` past the cap. */
export function stateFrame (room: string, users: ReadonlyMap<string, Map<string, Entry>>, capped: boolean): Buffer {
  const head = `{"type":"presence.state","room":${JSON.stringify(room)}`
  if (capped) return Buffer.from(`${head},"count":${users.size}}`)
  const out: Record<string, PresenceMeta[]> = {}
  for (const [key, entries] of users) out[key] = metasOf(entries)
  return Buffer.from(`${head},"users":${JSON.stringify(out)}}`)
}

/** `{"type":"presence.diff","room":…,"joins":{…},"leaves":{…}}`, or with `count` past the cap. */
export function diffFrame (change: RoomChange, capped: boolean): Buffer {
  const head = `{"type":"presence.diff","room":${JSON.stringify(change.room)}`
  if (capped) return Buffer.from(`${head},"count":${change.count}}`)
  return Buffer.from(`${head},"joins":${JSON.stringify(Object.fromEntries(change.joins))},"leaves":${JSON.stringify(Object.fromEntries(change.leaves))}}`)
}
