import type { AdapterHealth } from './adapters/adapter.ts'
import type { StatsSnapshot } from './stats.ts'
import type { PrometheusOptions } from './options.ts'

/*
 * The plugin's figures in an app's prom-client registry. Nothing is counted for
 * Prometheus: each metric reads the manager's own counters when the registry is
 * scraped, from one snapshot shared by all the metrics of that scrape. So with
 * Prometheus on, the cost per message is what it is without it.
 */

/** What a scrape reads: the stats snapshot and the adapter's health. */
export interface Scrape {
  stats: StatsSnapshot
  adapter: { name: string, health: AdapterHealth }
  draining: boolean
}

interface Sample {
  value: number
  labels?: Record<string, string | number>
  metricName?: string
}

type MetricType = 'counter' | 'gauge' | 'histogram'

/** A metric in prom-client's registry contract: name, help, type and `get()`. */
class ScrapedMetric {
  readonly aggregator = 'sum'
  readonly name: string
  readonly help: string
  readonly type: MetricType
  #read: (scrape: Scrape) => Sample[]
  #scrape: () => Scrape

  constructor (name: string, help: string, type: MetricType, scrape: () => Scrape, read: (scrape: Scrape) => Sample[]) {
    this.name = name
    this.help = help
    this.type = type
    this.#scrape = scrape
    this.#read = read
  }

  async get (): Promise<{ name: string, help: string, type: MetricType, aggregator: string, values: Sample[] }> {
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.#read(this.#scrape()) }
  }
}

function byLabel (label: string, counts: Partial<Record<string, number>>): Sample[] {
  return Object.entries(counts).map(([key, value]) => ({ value: value!, labels: { [label]: key } }))
}

function one (value: number): Sample[] {
  return [{ value }]
}

/** The adapter's own numeric figures, where it reports them (the Redis adapter does). */
const ADAPTER_FIGURES: Array<[field: string, type: MetricType, help: string]> = [
  ['queued', 'gauge', 'Messages waiting for the other instances to be reachable'],
  ['dropped', 'counter', 'Messages for the other instances dropped (queue full, or timed out)'],
  ['published', 'counter', 'Messages published to the other instances'],
  ['received', 'counter', 'Messages received from the other instances'],
  ['gaps', 'counter', 'Times messages between instances may have been lost']
]

/**
 * Adds the metrics to `registry`; returns the function that takes them out again
 * (the plugin calls it on close). `take` makes a scrape's snapshot.
 */
export function registerPrometheus (options: PrometheusOptions, take: () => Scrape): () => void {
  const prefix = options.prefix ?? 'ws_'
  // one snapshot per scrape: the registry asks every metric within the same turn
  let current: Scrape | undefined
  const scrape = (): Scrape => {
    if (current === undefined) {
      current = take()
      setImmediate(() => { current = undefined })
    }
    return current
  }
  const metrics: ScrapedMetric[] = []
  const add = (name: string, help: string, type: MetricType, read: (s: Scrape) => Sample[]): void => {
    metrics.push(new ScrapedMetric(prefix + name, help, type, scrape, read))
  }

  add('connections', 'Open WebSocket connections, by route', 'gauge', s => byLabel('route', s.stats.connectionsByRoute))
  add('users', 'Users with at least one open connection', 'gauge', s => one(s.stats.users))
  add('rooms', 'Rooms with at least one member', 'gauge', s => one(s.stats.rooms))
  add('draining', '1 while the instance shuts down', 'gauge', s => one(s.draining ? 1 : 0))
  add('connects_total', 'Connections accepted', 'counter', s => one(s.stats.connectsTotal))
  add('disconnects_total', 'Connections ended, by reason (slow_consumer, heartbeat_timeout, ...)', 'counter', s => byLabel('reason', s.stats.disconnectsTotal))
  add('rejected_connections_total', 'Upgrades refused, by reason', 'counter', s => byLabel('reason', s.stats.rejectedTotal))
  add('inbound_rejected_total', 'Inbound messages refused, by error code', 'counter', s => byLabel('code', s.stats.inboundRejectedTotal))
  add('messages_received_total', 'Data messages received', 'counter', s => one(s.stats.messagesIn))
  add('messages_sent_total', 'Data messages sent', 'counter', s => one(s.stats.messagesOut))
  add('received_bytes_total', 'Bytes of data messages received', 'counter', s => one(s.stats.bytesIn))
  add('sent_bytes_total', 'Bytes of data messages sent', 'counter', s => one(s.stats.bytesOut))
  add('broadcasts_total', 'Broadcasts sent from this instance', 'counter', s => one(s.stats.broadcastsTotal))
  add('failed_deliveries_total', 'Deliveries that failed: of broadcasts and sends, and messages held behind an open fragment of the app when the connection ended', 'counter', s => one(s.stats.failedDeliveriesTotal))
  add('dropped_messages_total', 'Volatile messages dropped for slow consumers', 'counter', s => one(s.stats.droppedTotal))
  add('heartbeat_timeouts_total', 'Connections ended for a missed heartbeat', 'counter', s => one(s.stats.heartbeatTimeoutsTotal))
  add('heartbeat_rtt_seconds', 'Heartbeat round trips', 'histogram', s => {
    const latency = s.stats.latency!
    const name = prefix + 'heartbeat_rtt_seconds'
    const values: Sample[] = latency.buckets.map(([le, count]) => ({ metricName: `${name}_bucket`, labels: { le: le / 1000 }, value: count }))
    values.push({ metricName: `${name}_bucket`, labels: { le: '+Inf' }, value: latency.count })
    values.push({ metricName: `${name}_sum`, value: latency.sumMs / 1000 })
    values.push({ metricName: `${name}_count`, value: latency.count })
    return values
  })
  add('adapter_up', '1 while the other instances can be reached (always 1 in memory)', 'gauge', s => [{ value: s.adapter.health.status === 'up' ? 1 : 0, labels: { adapter: s.adapter.name } }])
  for (const [field, type, help] of ADAPTER_FIGURES) {
    add(`adapter_${field}${type === 'counter' ? '_total' : ''}`, help, type, s => {
      const value = s.adapter.health[field]
      return typeof value === 'number' ? [{ value, labels: { adapter: s.adapter.name } }] : []
    })
  }

  for (const metric of metrics) options.registry.registerMetric(metric as never)
  return () => {
    for (const metric of metrics) options.registry.removeSingleMetric(metric.name)
  }
}
