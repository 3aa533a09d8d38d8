import type { GapInfo, InstanceInfo } from '../adapters/adapter.ts'
import type { StatsSnapshot } from '../stats.ts'
import type { DashboardSource } from './source.ts'

/*
 * What every open dashboard gets each tick, made once for all of them: the totals, the rates
 * since the last tick, the heartbeat round-trip percentiles over the open connections, the
 * largest rooms, the adapter and the other instances. One point of the plot is kept per tick
 * in a ring of `history` points, whether a dashboard is open or not, so a page opened now
 * shows the last minutes.
 */

/** One point of the plot: [time (ms), connections, messages/s in, messages/s out, disconnects/s]. */
export type Sample = [t: number, connections: number, inPerSecond: number, outPerSecond: number, disconnectsPerSecond: number]

export interface Rates {
  messagesIn: number
  messagesOut: number
  bytesIn: number
  bytesOut: number
  broadcasts: number
  disconnects: number
}

export interface Percentiles {
  /** Connections with a measured round trip. */
  count: number
  p50: number | undefined
  p90: number | undefined
  p99: number | undefined
  max: number | undefined
}

export interface ClusterSummary {
  instances: Array<InstanceInfo & { self: boolean, health: string }>
  /** Over every live instance. */
  connections: number
  error?: string
}

export interface Snapshot {
  type: 'tick'
  t: number
  instance: string
  stats: StatsSnapshot
  perSecond: Rates
  rtt: Percentiles
  adapter: { name: string, status: string, draining: boolean, gaps: number, lastGap: (GapInfo & { at: number }) | undefined }
  /** The largest rooms: their members here, and for presence rooms the users present on every instance. */
  rooms: { total: number, top: Array<[room: string, members: number] | [room: string, members: number, present: number]> }
  cluster: ClusterSummary | undefined
  sample: Sample
}

/** The rooms listed in a snapshot: the largest. */
export const TOP_ROOMS = 50

function disconnects (stats: StatsSnapshot): number {
  let total = 0
  for (const count of Object.values(stats.disconnectsTotal)) total += count
  return total
}

export class Sampler {
  readonly #source: DashboardSource
  readonly #history: Sample[] = []
  readonly #size: number
  #last: { t: number, stats: StatsSnapshot } | undefined = undefined
  #rates: Rates = { messagesIn: 0, messagesOut: 0, bytesIn: 0, bytesOut: 0, broadcasts: 0, disconnects: 0 }
  #rtts = new Float64Array(16)
  #gaps = 0
  #lastGap: (GapInfo & { at: number }) | undefined = undefined

  constructor (source: DashboardSource, size: number) {
    this.#source = source
    this.#size = size
  }

  /** The plot's points, oldest first. */
  get history (): readonly Sample[] {
    return this.#history
  }

  gap (info: GapInfo): void {
    this.#gaps++
    this.#lastGap = { ...info, at: Date.now() }
  }

  /** Takes one point: the rates since the last one. Returns the stats it read. */
  sample (now: number): { stats: StatsSnapshot, sample: Sample } {
    const stats = this.#source.stats()
    const last = this.#last
    if (last !== undefined) {
      const seconds = Math.max(now - last.t, 1) / 1000
      const rate = (a: number, b: number): number => Math.round((a - b) / seconds * 10) / 10
      this.#rates = {
        messagesIn: rate(stats.messagesIn, last.stats.messagesIn),
        messagesOut: rate(stats.messagesOut, last.stats.messagesOut),
        bytesIn: rate(stats.bytesIn, last.stats.bytesIn),
        bytesOut: rate(stats.bytesOut, last.stats.bytesOut),
        broadcasts: rate(stats.broadcastsTotal, last.stats.broadcastsTotal),
        disconnects: rate(disconnects(stats), disconnects(last.stats))
      }
    }
    this.#last = { t: now, stats }
    const sample: Sample = [now, stats.connections, this.#rates.messagesIn, this.#rates.messagesOut, this.#rates.disconnects]
    this.#history.push(sample)
    if (this.#history.length > this.#size) this.#history.shift()
    return { stats, sample }
  }

  /** The whole snapshot, for the ticks when a dashboard is open (the caller adds the cluster). */
  snapshot (now: number): Snapshot {
    const { stats, sample } = this.sample(now)
    const source = this.#source
    return {
      type: 'tick',
      t: now,
      instance: source.instanceId,
      stats,
      perSecond: this.#rates,
      rtt: this.#percentiles(),
      adapter: { name: source.adapterName, status: source.health().status, draining: source.draining(), gaps: this.#gaps, lastGap: this.#lastGap },
      rooms: this.#rooms(),
      cluster: undefined,
      sample
    }
  }

  /** The largest rooms, each presence room with its count of users present (the tracker's map's size, nothing copied). */
  #rooms (): Snapshot['rooms'] {
    const source = this.#source
    const { total, top } = topRooms(source.rooms(), TOP_ROOMS)
    return {
      total,
      top: top.map(([room, members]) => {
        const present = source.presence(room).size
        return present === 0 ? [room, members] : [room, members, present]
      })
    }
  }

  /** Over the last round trip of every open connection that has one: one pass, one sort of numbers. */
  #percentiles (): Percentiles {
    let n = 0
    let rtts = this.#rtts
    for (const conn of this.#source.connections()) {
      const rtt = conn.rtt
      if (rtt === undefined) continue
      if (n === rtts.length) {
        const grown = new Float64Array(rtts.length * 2)
        grown.set(rtts)
        rtts = this.#rtts = grown
      }
      rtts[n++] = rtt
    }
    if (n === 0) return { count: 0, p50: undefined, p90: undefined, p99: undefined, max: undefined }
    const sorted = rtts.subarray(0, n).sort()
    const at = (q: number): number => sorted[Math.min(n - 1, Math.ceil(q * n) - 1)]
    return { count: n, p50: at(0.5), p90: at(0.9), p99: at(0.99), max: sorted[n - 1] }
  }
}

/** The `limit` largest rooms, largest first, in one pass over them. */
export function topRooms (rooms: Iterable<[string, number]>, limit: number): { total: number, top: Array<[string, number]> } {
  const top: Array<[string, number]> = []
  let total = 0
  for (const entry of rooms) {
    total++
    if (top.length === limit && entry[1] <= top[limit - 1][1]) continue
    let i = top.length === limit ? limit - 1 : top.length
    top[i] = entry
    while (i > 0 && top[i - 1][1] < entry[1]) {
      top[i] = top[i - 1]
      top[--i] = entry
    }
  }
  return { total, top }
}
