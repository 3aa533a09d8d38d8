import type { ManagedConnection } from '../connection.ts'
import { kConnectedAt } from '../symbols.ts'
import type { DashboardSource, RemoteConnection } from './source.ts'

/*
 * The connection table: the server filters and pages, the page gets one page of rows. An
 * exact clientId, userId or room is found on the indexes, this instance's and the other
 * instances' (made from the presence's list the first time an exact search asks, kept until
 * the list is read again); when neither has it, the search is a substring of any, one pass
 * over the connections (oldest first, the registry's order), counting the matches and
 * keeping the rows of the page asked for. Connections of other instances come after this
 * instance's, with what the presence knows of them.
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

/** The other instances' connections as the presence last listed them, with indexes for exact searches. */
export class RemoteConnections {
  readonly all: readonly RemoteConnection[]
  #indexes: Record<'clientId' | 'userId' | 'room', Map<string, RemoteConnection[]>> | undefined = undefined

  constructor (all: readonly RemoteConnection[]) {
    this.all = all
  }

  /** The connections whose field is exactly `value` (built on the first call, in one pass). */
  exact (field: 'clientId' | 'userId' | 'room', value: string): readonly RemoteConnection[] {
    if (this.#indexes === undefined) {
      const indexes = this.#indexes = { clientId: new Map(), userId: new Map(), room: new Map() }
      const add = (map: Map<string, RemoteConnection[]>, key: string, entry: RemoteConnection): void => {
        const list = map.get(key)
        if (list === undefined) map.set(key, [entry])
        else list.push(entry)
      }
      for (const entry of this.all) {
        add(indexes.clientId, entry.id, entry)
        if (entry.userId !== undefined) add(indexes.userId, entry.userId, entry)
        for (const room of entry.rooms) add(indexes.room, room, entry)
      }
    }
    return this.#indexes[field].get(value) ?? NONE
  }
}

const NONE: readonly RemoteConnection[] = []

/** The exact matches of a query, here and elsewhere; undefined when it is no exact search or neither has it. */
function exactMatches (source: DashboardSource, q: TableQuery, remote: RemoteConnections): [Iterable<ManagedConnection>, readonly RemoteConnection[]] | undefined {
  const s = q.search
  let local: readonly ManagedConnection[] | ReadonlySet<ManagedConnection>
  let field: 'clientId' | 'userId' | 'room'
  if (q.field === 'userId') {
    field = 'userId'
    local = [...source.userConnections(s)]
  } else if (q.field === 'room') {
    field = 'room'
    local = source.roomMembers(s)
  } else {
    field = 'clientId'
    const conn = source.connection(s)
    local = conn === undefined ? [] : [conn]
  }
  const elsewhere = remote.exact(field, s)
  const here = 'size' in local ? local.size : local.length
  return here === 0 && elsewhere.length === 0 ? undefined : [local, elsewhere]
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
export function tablePage (source: DashboardSource, q: TableQuery, remote: RemoteConnections, now: number, rates: RowRates): TablePage {
  const rows: Row[] = []
  const end = q.offset + q.limit
  let total = 0
  const exact = q.search === '' ? undefined : exactMatches(source, q, remote)
  const scan = q.search !== '' && exact === undefined
  for (const conn of exact?.[0] ?? source.connections()) {
    if (scan && !matches(conn.id, conn.userId, conn.rooms, q)) continue
    if (total >= q.offset && total < end) rows.push(localRow(conn, source.instanceId, now, rates))
    total++
  }
  for (const entry of exact?.[1] ?? remote.all) {
    if (scan && !matches(entry.id, entry.userId, entry.rooms, q)) continue
    if (total >= q.offset && total < end) rows.push(remoteRow(entry))
    total++
  }
  return { type: 'table', query: q, total, rows }
}
