import { Type, type Static, type TObject, type TSchema } from '@sinclair/typebox'
import { Value, ValueErrorType, type ValueError } from '@sinclair/typebox/value'
import { InvalidOptionsError } from './errors.ts'
import type { WsAdapter } from './adapters/adapter.ts'
import type { IdentifyFn } from './identity.ts'
import type { FastifyReply, FastifyRequest } from 'fastify'

/*
 * The plugin's options: one TypeBox schema with a default and a doc comment per field,
 * validated once at `register`. Each field carries `expected`, the words used in the
 * error when a value does not fit. Functions and objects (identify, adapter) are
 * checked beside the schema.
 */

const ms = (def: number, expected = 'a positive integer number of milliseconds'): ReturnType<typeof Type.Integer> =>
  Type.Integer({ minimum: 1, default: def, expected })
const count = (def: number, expected: string): ReturnType<typeof Type.Integer> =>
  Type.Integer({ minimum: 0, default: def, expected })

export const HeartbeatModeSchema = Type.Union([Type.Literal('ping'), Type.Literal('message')], {
  default: 'ping',
  expected: '`ping` (protocol ping frames) or `message` (JSON {"type":"ping"} frames a browser can answer)'
})

export const HeartbeatOptionsSchema = Type.Object({
  /** Send heartbeats and terminate silent connections. */
  enabled: Type.Boolean({ default: true, expected: 'a boolean' }),
  /** How often idle connections are pinged, in ms. */
  interval: ms(30_000),
  /** A connection that sent nothing (no pong, no message) for this long is terminated, in ms. */
  timeout: ms(60_000),
  /** `ping`: protocol ping frames. `message`: `{"type":"ping","ts":…}` text frames answered by `{"type":"pong"}`. */
  mode: HeartbeatModeSchema
}, { additionalProperties: false, default: {}, expected: 'an object' })

export const LimitsOptionsSchema = Type.Object({
  /** Connections on this instance; 0 means unlimited. Over it: HTTP 503 before the upgrade (1013 if a race lets one through). */
  maxConnections: count(0, 'a non-negative integer (0 = unlimited)'),
  /** Connections of one userId; 0 means unlimited. Over it: the new connection is closed with 4409. */
  maxConnectionsPerUser: count(0, 'a non-negative integer (0 = unlimited)'),
  /** Concurrent connections from one IP (`request.ip`, so Fastify's `trustProxy` applies); 0 means unlimited. Over it: HTTP 429. */
  maxConnectionsPerIp: count(0, 'a non-negative integer (0 = unlimited)'),
  /** Largest inbound message in bytes; a larger one closes that socket with 1009. */
  maxMessageSize: Type.Integer({ minimum: 1, default: 1_048_576, expected: 'a positive integer number of bytes' }),
  /** Inbound messages held while no `message` listener is attached yet; one more closes with 1008. */
  maxQueuedMessages: Type.Integer({ minimum: 1, default: 100, expected: 'a positive integer' }),
  /** Bytes held in that queue; more closes with 1008. */
  maxQueuedBytes: Type.Integer({ minimum: 1, default: 1_048_576, expected: 'a positive integer number of bytes' })
}, { additionalProperties: false, default: {}, expected: 'an object' })

export const BackpressureOptionsSchema = Type.Object({
  /** Bytes waiting in a socket's send buffer above which it counts as slow. */
  highWaterMark: Type.Integer({ minimum: 1, default: 1_048_576, expected: 'a positive integer number of bytes' }),
  /** Bytes a send may never take the buffer beyond: the connection is closed (1013) at once. */
  maxBytes: Type.Integer({ minimum: 1, default: 8_388_608, expected: 'a positive integer number of bytes' }),
  /**
   * Bytes of a socket's messages waiting for permessage-deflate (ws compresses them one at a time,
   * on zlib's thread pool): a send that would go past it closes the connection (1013) at once.
   * Only with `compression: 'deflate'`.
   */
  maxDeflateBytes: Type.Integer({ minimum: 1, default: 67_108_864, expected: 'a positive integer number of bytes' }),
  /** How long a connection may stay above the high-water mark before it is closed (1013), in ms. */
  grace: ms(5_000),
  /** `close`: only the rules above. `drop`: also drop volatile messages while above the high-water mark. */
  policy: Type.Union([Type.Literal('close'), Type.Literal('drop')], { default: 'close', expected: '`close` or `drop`' })
}, { additionalProperties: false, default: {}, expected: 'an object' })

export const FlushOptionsSchema = Type.Object({
  /**
   * Write coalescing, in ms: a socket's writes within this long after its first leave together,
   * in one write (Centrifugo's `client.write_delay`). Costs up to that much latency per message,
   * saves a write syscall per message per socket under load. 0 (default): each message is written
   * at once (several in one event-loop turn still leave together).
   */
  delay: Type.Number({ minimum: 0, maximum: 1000, default: 0, expected: 'a number of milliseconds from 0 to 1000' })
}, { additionalProperties: false, default: {}, expected: 'an object' })

export const RateLimitOptionsSchema = Type.Object({
  /** Inbound messages per second per connection (a token bucket); 0 means unlimited. */
  messagesPerSecond: count(0, 'a non-negative number (0 = unlimited)'),
  /** Messages the bucket holds: a burst allowed above the rate (default: the rate, at least 1). */
  burst: Type.Optional(Type.Integer({ minimum: 1, expected: 'a positive integer' })),
  /** Inbound bytes per second per connection; 0 means unlimited. The burst is one second's worth. */
  bytesPerSecond: count(0, 'a non-negative integer (0 = unlimited)'),
  /** Violations (dropped messages, invalid messages) tolerated within `window` before the connection is closed. */
  maxViolations: Type.Integer({ minimum: 1, default: 10, expected: 'a positive integer' }),
  /** The window those violations are counted in, in ms. */
  window: ms(60_000)
}, { additionalProperties: false, default: {}, expected: 'an object' })

/** The shutdown's batches (see BENCHMARKS.md, "The rolling restart"). */
const BATCH_SIZE = 0
const BATCH_INTERVAL = 250

export const ShutdownOptionsSchema = Type.Object({
  /** How long `fastify.close()` waits for clients to answer the close frame before terminating them, in ms. */
  timeout: ms(5_000),
  /** Close code sent to every client on shutdown: 1001 (going away) or 1012 (service restart). */
  closeCode: Type.Union([Type.Literal(1001), Type.Literal(1012)], { default: 1012, expected: '1001 or 1012' }),
  /** Close reason sent with it (at most 123 bytes). */
  closeReason: Type.String({ maxLength: 123, default: 'server shutting down', expected: 'a string of at most 123 bytes' }),
  /**
   * Connections closed at once; the next ones `batchInterval` later, so that the clients of a
   * stopped instance do not all reconnect elsewhere in the same moment. 0: all at once.
   */
  batchSize: count(BATCH_SIZE, 'a non-negative integer (0: all at once)'),
  /** The pause between two batches, in ms. */
  batchInterval: ms(BATCH_INTERVAL)
}, { additionalProperties: false, default: {}, expected: 'an object' })

const Secret = Type.String({ minLength: 16, expected: 'a string of at least 16 characters' })

export const ReconnectOptionsSchema = Type.Object({
  /**
   * Secret(s) that sign reconnect tokens, at least 16 characters: a list allows rotation (the
   * first signs, all verify). Without one, a random secret per process is used and tokens
   * neither survive a restart nor work on another instance.
   */
  secret: Type.Optional(Type.Union([Secret, Type.Array(Secret, { minItems: 1 })], { expected: 'a string of at least 16 characters, or a non-empty list of them' })),
  /** How long a reconnect token is good for, in ms. */
  tokenTtl: ms(3_600_000),
  /** How long a resumable session is kept after its connection went away, in ms. */
  maxDisconnect: ms(120_000),
  /** Messages kept for replay (all routes together). */
  replayMessages: Type.Integer({ minimum: 1, default: 1000, expected: 'a positive integer' }),
  /** Bytes kept for replay. */
  replayBytes: Type.Integer({ minimum: 1, default: 1_048_576, expected: 'a positive integer number of bytes' })
}, { additionalProperties: false, default: {}, expected: 'an object' })

/** The dashboard's options beside `authorize` (a function, checked beside the schema). */
export const DashboardOptionsSchema = Type.Object({
  /** Where the dashboard is served: the page at this path, its script, style and live socket under it. */
  path: Type.String({ pattern: '^(/[A-Za-z0-9._~-]+)+$', default: '/ws-admin', expected: 'a path such as `/ws-admin` (starting with /, not ending with /)' }),
  /** Shows everything, allows no action (disconnect, send): for shared screens. */
  readOnly: Type.Boolean({ default: false, expected: 'a boolean' }),
  /** How often the open dashboards get a snapshot (and the plot a point), in ms. */
  interval: Type.Integer({ minimum: 10, maximum: 60_000, default: 1000, expected: 'an integer number of milliseconds from 10 to 60000' }),
  /** How many points the plot keeps: 300 at one a second is the last five minutes. */
  history: Type.Integer({ minimum: 10, maximum: 3600, default: 300, expected: 'an integer from 10 to 3600' })
}, { additionalProperties: false, expected: 'an object' })

/**
 * What `dashboard.authorize` answers for a request: `true` (or `{ user }`, naming who acts in the
 * action log lines) lets it in, `false` refuses it with 403, `'unauthenticated'` with 401.
 */
export type DashboardAuthorization = boolean | 'unauthenticated' | { user: string }

export type DashboardAuthorizeFn = (request: FastifyRequest, reply: FastifyReply) => DashboardAuthorization | Promise<DashboardAuthorization>

export interface DashboardOptions extends Partial<Static<typeof DashboardOptionsSchema>> {
  /**
   * Who may see the dashboard, asked on every request to it (the page, its files, the ticket its
   * socket opens with). `'unsafe-allow-all'`: anyone who can reach the server, for local development only.
   */
  authorize: DashboardAuthorizeFn | 'unsafe-allow-all'
}

export interface ResolvedDashboardOptions extends Static<typeof DashboardOptionsSchema> {
  authorize: DashboardAuthorizeFn | 'unsafe-allow-all'
}

export const LogLevelSchema = Type.Union([
  Type.Literal('fatal'), Type.Literal('error'), Type.Literal('warn'), Type.Literal('info'),
  Type.Literal('debug'), Type.Literal('trace'), Type.Literal('silent')
], { expected: 'one of fatal, error, warn, info, debug, trace, silent' })

export const PluginOptionsSchema = Type.Object({
  heartbeat: HeartbeatOptionsSchema,
  limits: LimitsOptionsSchema,
  shutdown: ShutdownOptionsSchema,
  reconnect: ReconnectOptionsSchema,
  backpressure: BackpressureOptionsSchema,
  flush: FlushOptionsSchema,
  rateLimit: RateLimitOptionsSchema,
  /** The server's requests to clients (`conn.request`). */
  requests: Type.Object({
    /** How long `conn.request()` waits for the client's answer by default, in ms. */
    timeout: ms(10_000)
  }, { additionalProperties: false, default: {}, expected: 'an object' }),
  /** Room presence, on routes with `config.ws.presence` (see the README's Presence). */
  presence: Type.Object({
    /**
     * How long changes are collected before they go out, in ms: one diff per room per flush for
     * every member. 0 (default): at the end of the event-loop turn.
     */
    interval: count(0, 'a non-negative integer number of milliseconds'),
    /** Past this many users in a room, its members get the user count only, not the map. */
    maxMembers: Type.Integer({ minimum: 1, default: 1000, expected: 'a positive integer' }),
    /** How often the instance checks which other instances are gone, and takes their users out, in ms. */
    sweep: ms(5_000)
  }, { additionalProperties: false, default: {}, expected: 'an object' }),
  /** The operations of `wsManager.cluster` (`send`, `join`, `leave`, `disconnect`, `broadcast`). */
  cluster: Type.Object({
    /** How long they wait for the other instances' answers by default, in ms. */
    timeout: ms(5_000)
  }, { additionalProperties: false, default: {}, expected: 'an object' }),
  /**
   * Origins allowed to open a WebSocket (`scheme://host[:port]`, exact), against cross-site
   * WebSocket hijacking; a request without an Origin (not a browser) is allowed. Others get HTTP 403.
   */
  allowedOrigins: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { expected: 'an array of origins such as https://example.com' })),
  /** Wait this long for the peer's close frame after we close, then terminate (ws' own default is 30 s), in ms. */
  closeTimeout: ms(3_000),
  /** permessage-deflate: `none` (default: it costs memory and CPU per socket) or `deflate`. */
  compression: Type.Union([Type.Literal('none'), Type.Literal('deflate')], { default: 'none', expected: '`none` or `deflate`' }),
  /** Keep latency histograms and message totals for `getStats()`. Off: no per-message aggregate work. */
  metrics: Type.Boolean({ default: false, expected: 'a boolean' }),
  /** Level of the plugin's logs; default: the Fastify logger's level. */
  logLevel: Type.Optional(LogLevelSchema)
}, { additionalProperties: false, expected: 'an object' })

export type HeartbeatOptions = Static<typeof HeartbeatOptionsSchema>
export type LimitsOptions = Static<typeof LimitsOptionsSchema>
export type ShutdownOptions = Static<typeof ShutdownOptionsSchema>
export type BackpressureOptions = Static<typeof BackpressureOptionsSchema>
export type RateLimitOptions = Static<typeof RateLimitOptionsSchema>
export type HeartbeatMode = Static<typeof HeartbeatModeSchema>
export type LogLevel = Static<typeof LogLevelSchema>

type DeepPartial<T> = { [K in keyof T]?: T[K] extends object ? Partial<T[K]> : T[K] }

/** What the plugin uses of a prom-client `Registry` (its default `register`, or one of the app's). */
export interface PrometheusRegistry {
  registerMetric (metric: never): void
  removeSingleMetric (name: string): void
}

export interface PrometheusOptions {
  /** The prom-client registry to add the metrics to: `import { register } from 'prom-client'`. */
  registry: PrometheusRegistry
  /** Prefix of every metric name; default `ws_`. */
  prefix?: string
}

/** What users pass to `register`. */
export interface WsStabilizerOptions extends DeepPartial<Static<typeof PluginOptionsSchema>> {
  /** How to identify a client from the upgrade request; a route's `config.ws.identify` wins. */
  identify?: IdentifyFn
  /** Delivery between instances, with its presence and resume state; default: an in-memory adapter (this process only). */
  adapter?: WsAdapter
  /** Adds the plugin's metrics to a prom-client registry (and turns `metrics` on). */
  prometheus?: PrometheusOptions
  /** A live dashboard of the connections, rooms and traffic, served by the plugin (off unless given). */
  dashboard?: DashboardOptions
}

/** Options after validation and defaults. */
export interface ResolvedOptions extends Static<typeof PluginOptionsSchema> {
  identify: IdentifyFn | undefined
  adapter: WsAdapter | undefined
  prometheus: PrometheusOptions | undefined
  dashboard: ResolvedDashboardOptions | undefined
}

/** Turns a TypeBox path (`/heartbeat/interval`) into the option's name (`heartbeat.interval`). */
export function fieldName (path: string): string {
  return path.replace(/^\//, '').split('/').join('.')
}

export function show (value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value)
  if (typeof value === 'function') return 'a function'
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}

/** Copies plain objects and arrays (defaults are written into the copy); anything else is kept as it is, to be judged. */
function copy (value: unknown): unknown {
  if (Array.isArray(value)) return value.map(copy)
  if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, copy(v)]))
  }
  return value
}

/**
 * An object given where a union allows an object (`heartbeat: false | { … }`): the problem
 * is inside it, so the error names the field there, not the union.
 */
function innermost (error: ValueError): ValueError {
  if (error.type !== ValueErrorType.Union || typeof error.value !== 'object' || error.value === null) return error
  const variant = (error.schema.anyOf as TSchema[]).findIndex(s => s.type === 'object')
  if (variant < 0) return error
  // the union failed, so its object variant did too
  return innermost(error.errors[variant].First()!)
}

/**
 * Applies defaults to a copy of `input` (unless told not to: a route's options fall back
 * on the plugin's, not on the schema's defaults) and checks it against `schema`.
 * Returns the first problem as "Expected `field` to be …, got `…`", or the value.
 * `beside` names the top-level options checked beside the schema (functions, objects),
 * listed among the known ones when a key is unknown.
 */
export function check<S extends TSchema> (schema: S, input: unknown, prefix = '', defaults = true, beside: readonly string[] = []): { value: Static<S>, problem?: undefined } | { problem: string, value?: undefined } {
  const value = defaults ? Value.Default(schema, copy(input)) : input
  const error = Value.Errors(schema, value).First()
  if (error === undefined) return { value: value as Static<S> }
  const first = innermost(error)
  const name = prefix + fieldName(first.path)
  if (first.type === ValueErrorType.ObjectAdditionalProperties) {
    const known = [...Object.keys((first.schema as TObject).properties), ...(first.schema === schema ? beside : [])]
    return { problem: `Unknown option \`${name}\`; known options here are ${known.map(k => `\`${k}\``).join(', ')}` }
  }
  return { problem: `Expected \`${name}\` to be ${String(first.schema.expected)}, got \`${show(first.value)}\`` }
}

export function checkFunction (value: unknown, name: string): void {
  if (value !== undefined && typeof value !== 'function') {
    throw new InvalidOptionsError(`Expected \`${name}\` to be a function, got \`${show(value)}\``)
  }
}

export function checkAdapter (value: unknown): void {
  if (value === undefined) return
  const a = value as Partial<WsAdapter>
  if (typeof value !== 'object' || value === null || typeof a.start !== 'function' || typeof a.publish !== 'function' || typeof a.close !== 'function' || typeof a.presence?.start !== 'function') {
    throw new InvalidOptionsError(`Expected \`adapter\` to be an adapter object with start(), publish(), close() and a presence, got \`${show(value)}\``)
  }
}

const METRIC_PREFIX = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/

export function checkPrometheus (value: unknown): void {
  if (value === undefined) return
  const p = value as Partial<PrometheusOptions>
  if (typeof value !== 'object' || value === null || typeof p.registry?.registerMetric !== 'function' || typeof p.registry.removeSingleMetric !== 'function') {
    throw new InvalidOptionsError(`Expected \`prometheus.registry\` to be a prom-client Registry (registerMetric, removeSingleMetric), got \`${show((value as { registry?: unknown } | null)?.registry ?? value)}\``)
  }
  if (p.prefix !== undefined && (typeof p.prefix !== 'string' || !METRIC_PREFIX.test(p.prefix))) {
    throw new InvalidOptionsError(`Expected \`prometheus.prefix\` to be a metric name prefix such as \`ws_\` (letters, digits, _ and :), got \`${show(p.prefix)}\``)
  }
}

/** The dashboard's options: its schema, and `authorize`, which it cannot be without. */
export function checkDashboard (value: unknown): ResolvedDashboardOptions | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidOptionsError(`Expected \`dashboard\` to be an object with authorize, got \`${show(value)}\``)
  }
  const { authorize, ...rest } = value as Partial<DashboardOptions>
  if (typeof authorize !== 'function' && authorize !== 'unsafe-allow-all') {
    throw new InvalidOptionsError(`Expected \`dashboard.authorize\` to be a function (request) => boolean, or 'unsafe-allow-all' for local development, got \`${show(authorize)}\``)
  }
  const result = check(DashboardOptionsSchema, rest, 'dashboard.', true, ['authorize'])
  if (result.problem !== undefined) throw new InvalidOptionsError(result.problem)
  return { ...result.value, authorize }
}

const BESIDE_THE_SCHEMA = ['identify', 'adapter', 'prometheus', 'dashboard']

/** Validates the plugin options once, at register. Throws `InvalidOptionsError` naming the field. */
export function resolveOptions (input: WsStabilizerOptions | undefined): ResolvedOptions {
  if (input !== undefined && (typeof input !== 'object' || input === null || Array.isArray(input))) {
    throw new InvalidOptionsError(`Expected \`options\` to be an object, got \`${show(input)}\``)
  }
  // prefix and logSerializers are Fastify's own register options, not ours
  const { identify, adapter, prometheus, dashboard: dashboardInput, prefix: _prefix, logSerializers: _serializers, ...rest } = (input ?? {}) as WsStabilizerOptions & { prefix?: unknown, logSerializers?: unknown }
  checkFunction(identify, 'identify')
  checkAdapter(adapter)
  checkPrometheus(prometheus)
  const dashboard = checkDashboard(dashboardInput)
  const result = check(PluginOptionsSchema, rest, '', true, BESIDE_THE_SCHEMA)
  if (result.problem !== undefined) throw new InvalidOptionsError(result.problem)
  const options = result.value
  if (options.heartbeat.timeout <= options.heartbeat.interval) {
    throw new InvalidOptionsError(`Expected \`heartbeat.timeout\` to be greater than \`heartbeat.interval\` (${options.heartbeat.interval}), got \`${options.heartbeat.timeout}\``)
  }
  // the Prometheus histogram is the round-trip histogram
  if (prometheus !== undefined) options.metrics = true
  return { ...options, identify, adapter, prometheus, dashboard }
}
