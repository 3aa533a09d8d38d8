import type { DashboardSource } from './source.ts'

/*
 * Who is present in a room, for the dashboard: the room's users over every instance (the
 * presence tracker's map, read in place) with how many connections each has there, one page
 * of at most MAX_USERS, the order being the map's (who came first). A dashboard asks for a
 * room; its page comes with every tick after that, as the table's does.
 */

export const MAX_USERS = 100

export interface PresenceQuery {
  room: string
  offset: number
}

export interface PresencePage {
  type: 'presence'
  room: string
  offset: number
  /** Users present in all. */
  total: number
  /** [userId (or the clientId of a connection without one), connections in the room]. */
  users: Array<[user: string, connections: number]>
}

/** A query as the page sent it, made safe; undefined when it names no room (nothing selected). */
export function presenceQuery (input: Record<string, unknown>): PresenceQuery | undefined {
  if (typeof input.room !== 'string' || input.room === '') return undefined
  const offset = Number.isSafeInteger(input.offset) && (input.offset as number) > 0 ? input.offset as number : 0
  return { room: input.room.slice(0, 200), offset }
}

export function presencePage (source: DashboardSource, q: PresenceQuery): PresencePage {
  const present = source.presence(q.room)
  const users: Array<[string, number]> = []
  const end = q.offset + MAX_USERS
  let i = 0
  for (const [user, connections] of present) {
    if (i >= end) break
    if (i++ >= q.offset) users.push([user, connections.size])
  }
  return { type: 'presence', room: q.room, offset: q.offset, total: present.size, users }
}
