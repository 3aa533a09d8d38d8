import type { ManagedConnection } from '../connection.ts'
import { kConnectedAt } from '../symbols.ts'
import type { DashboardSource, RemoteConnection } from './source.ts'

/*
 * The connection table: the server filters and pages, the page gets one page of rows. An
 * exact clientId, userId or room is found on the indexes; anything else is one pass over
 * the connections (oldest first, the registry's order), counting the matches and keeping
 * the rows of the page asked for. Connections of other instances (from the presence) come
 * after this instance's, with what the presence knows of them.
 */

export type SearchField = 'any' | 'clientId' | 'userId' | 'room'

export interface TableQuery {
  search: string
  field: SearchField
  offset: number
  limit: number
}

export const MAX_PAGE = 100
const FIELDS: readonly SearchField[] = ['any', 'clientId', 'userId', 'room']
/** Rooms listed per row; the row says how many there are. */
const ROW_ROOMS = 5

export interface Row {
  clientId: string
  userId: string | undefined
  /** This instance's id, or the other instance's when known; `remote` when not. */
  instance: string
  route: string | undefined
  rooms: string[]
  roomCount: number
  rttMs: number | undefined
  bufferedBytes: number | undefined
  inPerSecond: number | undefined
  outPerSecond: number | undefined
  ageMs: number | undefined
}

export interface TablePage {
  type: 'table'
  query: TableQuery
  /** Matches in all, here and elsewhere. */
  total: number
  rows: Row[]
}

/** A query as the page sent it, made safe: unknown fields are `any`, the page is at most MAX_PAGE rows. */
export function tableQuery (input: Partial<Record<keyof TableQuery, unknown>>): TableQuery {
  const search = typeof input.search === 'string' ? input.search.trim().slice(0, 200) : ''
  const field = FIELDS.includes(input.field as SearchField) ? input.field as SearchField : 'any'
  const offset = Number.isSafeInteger(input.offset) && (input.offset as number) > 0 ? input.offset as number : 0
  const limit = Number.isSafeInteger(input.limit) && (input.limit as number) > 0 ? Math.min(input.limit as number, MAX_PAGE) : 25
  return { search, field, offset, limit }
}

export function queryKey (q: TableQuery): string {
  return `${q.field}\u0000${q.offset}\u0000${q.limit}\u0000${q.search}`
}

function roomsMatch (rooms: Iterable<string>, search: string): boolean {
  for (const room of rooms) {
    if (room.includes(search)) return true
  }
  return false
}

function matches (id: string, userId: string | undefined, rooms: Iterable<string>, q: TableQuery): boolean {
  const s = q.search
  switch (q.field) {
    case 'clientId': return id.includes(s)
    case 'userId': return userId?.includes(s) === true
    case 'room': return roomsMatch(rooms, s)
    default: return id.includes(s) || userId?.includes(s) === true || roomsMatch(rooms, s)
  }
}

/** The local connections a query is about: an index's when the search names one exactly, else all of them, filtered. */
function * localMatches (source: DashboardSource, q: TableQuery): Generator<ManagedConnection> {
  const s = q.search
  if (s === '') {
    yield * source.connections()
    return
  }
  if (q.field === 'clientId' || q.field === 'any') {
    const conn = source.connection(s)
    if (conn !== undefined) {
      yield conn
      return
    }
  }
  if (q.field === 'userId' || q.field === 'room') {
    const exact = q.field === 'userId' ? source.userConnections(s) : source.roomMembers(s)
    let found = false
    for (const conn of exact) {
      found = true
      yield conn
    }
    if (found) return
  }
  for (const conn of source.connections()) {
    if (matches(conn.id, conn.userId, conn.rooms, q)) yield conn
  }
}

/** The per-connection message rates of the rows shown: counters kept from one tick to the next for those rows only. */
export class RowRates {
  #previous = new Map<string, { t: number, in: number, out: number }>()
  #next = new Map<string, { t: number, in: number, out: number }>()

  /** Starts a tick: what the last one kept becomes the previous. */
  tick (): void {
    this.#previous = this.#next
    this.#next = new Map()
  }

  rates (conn: ManagedConnection, now: number): [number, number] {
    const { messagesIn, messagesOut } = conn.stats
    if (!this.#next.has(conn.id)) this.#next.set(conn.id, { t: now, in: messagesIn, out: messagesOut })
    // first shown: the average since it connected
    const base = this.#previous.get(conn.id) ?? { t: conn[kConnectedAt], in: 0, out: 0 }
    const seconds = Math.max(now - base.t, 1) / 1000
    return [Math.round((messagesIn - base.in) / seconds * 10) / 10, Math.round((messagesOut - base.out) / seconds * 10) / 10]
  }
}

function localRow (conn: ManagedConnection, instance: string, now: number, rates: RowRates): Row {
  const rooms = conn.rooms
  const listed: string[] = []
  for (const room of rooms) {
    if (listed.length === ROW_ROOMS) break
    listed.push(room)
  }
  const [inPerSecond, outPerSecond] = rates.rates(conn, now)
  return {
    clientId: conn.id,
    userId: conn.userId,
    instance,
    route: conn.route.url,
    rooms: listed,
    roomCount: rooms.size,
    rttMs: conn.rtt,
    bufferedBytes: conn.socket.bufferedAmount,
    inPerSecond,
    outPerSecond,
    ageMs: now - conn[kConnectedAt]
  }
}

function remoteRow (entry: RemoteConnection): Row {
  const rooms = [...entry.rooms]
  return {
    clientId: entry.id,
    userId: entry.userId,
    instance: 'remote',
    route: undefined,
    rooms: rooms.slice(0, ROW_ROOMS),
    roomCount: rooms.length,
    rttMs: undefined,
    bufferedBytes: undefined,
    inPerSecond: undefined,
    outPerSecond: undefined,
    ageMs: undefined
  }
}

/** One page of the table. */
export function tablePage (source: DashboardSource, q: TableQuery, remote: readonly RemoteConnection[], now: number, rates: RowRates): TablePage {
  const rows: Row[] = []
  const end = q.offset + q.limit
  let total = 0
  for (const conn of localMatches(source, q)) {
    if (total >= q.offset && total < end) rows.push(localRow(conn, source.instanceId, now, rates))
    total++
  }
  for (const entry of remote) {
    if (q.search !== '' && !matches(entry.id, entry.userId, entry.rooms, q)) continue
    if (total >= q.offset && total < end) rows.push(remoteRow(entry))
    total++
  }
  return { type: 'table', query: q, total, rows }
}
