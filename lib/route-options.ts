import { Type, type Static } from '@sinclair/typebox'
import { InvalidRouteOptionsError } from './errors.ts'
import { HeartbeatModeSchema, BackpressureOptionsSchema, FlushOptionsSchema, RateLimitOptionsSchema, check, show, type HeartbeatOptions, type ResolvedOptions } from './options.ts'
import type { IdentifyFn } from './identity.ts'
import { resolveAuth, type RouteAuthOptions } from './auth.ts'
import { resolveRateLimit, type RouteSettings } from './route-settings.ts'
import { compileRouter, type MessageDefinitions, type MessageRouter } from './inbound/router.ts'

/*
 * A route's `config.ws`: merged over the plugin's options once, when the route is
 * added, so nothing is merged per connection or per message.
 */

const RouteLimitsSchema = Type.Object({
  /** Connections on this route (on top of the plugin's instance-wide limit); 0 = unlimited. */
  maxConnections: Type.Optional(Type.Integer({ minimum: 0, expected: 'a non-negative integer (0 = unlimited)' })),
  /** Connections of one user on this route (on top of the plugin's limit); 0 = unlimited. */
  maxConnectionsPerUser: Type.Optional(Type.Integer({ minimum: 0, expected: 'a non-negative integer (0 = unlimited)' })),
  /** Largest inbound message on this route, in bytes (replaces the plugin's value). */
  maxMessageSize: Type.Optional(Type.Integer({ minimum: 1, expected: 'a positive integer number of bytes' })),
  /** Inbound messages queued before a listener is attached (replaces the plugin's value). */
  maxQueuedMessages: Type.Optional(Type.Integer({ minimum: 1, expected: 'a positive integer' })),
  /** Bytes queued before a listener is attached (replaces the plugin's value). */
  maxQueuedBytes: Type.Optional(Type.Integer({ minimum: 1, expected: 'a positive integer number of bytes' }))
}, { additionalProperties: false, expected: 'an object' })

const RouteHeartbeatSchema = Type.Union([
  Type.Literal(false),
  Type.Object({
    enabled: Type.Optional(Type.Boolean({ expected: 'a boolean' })),
    interval: Type.Optional(Type.Integer({ minimum: 1, expected: 'a positive integer number of milliseconds' })),
    timeout: Type.Optional(Type.Integer({ minimum: 1, expected: 'a positive integer number of milliseconds' })),
    mode: Type.Optional(HeartbeatModeSchema)
  }, { additionalProperties: false, expected: 'an object' })
], { expected: '`false` or an object with enabled, interval, timeout, mode' })

export const RouteOptionsSchema = Type.Object({
  /** Whether the plugin manages this WebSocket route (default true). */
  managed: Type.Optional(Type.Boolean({ expected: 'a boolean' })),
  /** Rooms every connection of this route joins on connect. */
  rooms: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { expected: 'an array of non-empty strings' })),
  /** Limits for this route: see RouteLimitsSchema. */
  limits: Type.Optional(RouteLimitsSchema),
  /** Heartbeat override for this route, or `false` to turn it off. */
  heartbeat: Type.Optional(RouteHeartbeatSchema),
  /**
   * The resume protocol on this route (see PROTOCOL.md): welcome frame with a token, resume, and
   * (with replay) offsets and replay. `true`, or `{ replay?: boolean (default true), maxDisconnect?: ms }`.
   */
  reconnect: Type.Optional(Type.Union([
    Type.Boolean(),
    Type.Object({
      replay: Type.Optional(Type.Boolean({ expected: 'a boolean' })),
      maxDisconnect: Type.Optional(Type.Integer({ minimum: 1, expected: 'a positive integer number of milliseconds' }))
    }, { additionalProperties: false, expected: 'an object' })
  ], { expected: 'a boolean or { replay?, maxDisconnect? }' })),
  /** Slow-consumer rules for this route (over the plugin's). */
  backpressure: Type.Optional(Type.Partial(BackpressureOptionsSchema, { additionalProperties: false, expected: 'an object' })),
  /**
   * Room presence for this route's connections, in every room they are in: `true` (their
   * metadata shown to the room's members as it is), or `{ fields: [...] }` (only these fields of it).
   */
  presence: Type.Optional(Type.Union([
    Type.Boolean(),
    Type.Object({
      fields: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { expected: 'an array of metadata field names' }))
    }, { additionalProperties: false, expected: 'an object' })
  ], { expected: 'a boolean or { fields? }' })),
  /** Write coalescing for this route (over the plugin's `flush`). */
  flush: Type.Optional(Type.Partial(FlushOptionsSchema, { additionalProperties: false, expected: 'an object' })),
  /** Inbound rate limits for this route (over the plugin's). */
  rateLimit: Type.Optional(Type.Partial(RateLimitOptionsSchema, { additionalProperties: false, expected: 'an object' })),
  /** Allowed browser origins for this route (replaces the plugin's `allowedOrigins`). */
  allowedOrigins: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { expected: 'an array of origins such as https://example.com' })),
  /** Who may connect: see `authenticate`. */
  auth: Type.Optional(Type.Object({
    /** Scopes the principal must all have. */
    scopes: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { expected: 'an array of scope names' })),
    /** Let clients without credentials in, as anonymous (default false). */
    anonymous: Type.Optional(Type.Boolean({ expected: 'a boolean' })),
    /** `http` (default): refuse with 401/403 before the upgrade. `close`: accept, send an error frame, close with 4401/4403 (browsers can read those). */
    reject: Type.Optional(Type.Union([Type.Literal('http'), Type.Literal('close')], { expected: '`http` or `close`' })),
    /** The query parameter a token may come in (default `access_token`); it is never logged by the plugin. */
    queryParameter: Type.Optional(Type.String({ minLength: 1, expected: 'a non-empty string' }))
  }, { additionalProperties: false, expected: 'an object' }))
}, { additionalProperties: false, expected: 'an object' })

/**
 * What a route may put in `config.ws`: the fields of RouteOptionsSchema (their type is the
 * schema's, so it is written once) and the functions checked beside it.
 */
export interface RouteWsOptions extends Static<typeof RouteOptionsSchema> {
  /** How to identify a client on this route (wins over the plugin's `identify`). */
  identify?: IdentifyFn
  /** Authenticates the upgrade: returns the principal, or null/undefined for none; throws to refuse. */
  authenticate?: RouteAuthOptions['authenticate']
  /** Typed, validated inbound messages: `{ type: { schema?, rateLimit?, handler } }` for `{type, id?, data}` envelopes. */
  messages?: MessageDefinitions
}

/** A managed route: its settings, and the router of its typed `messages` when it has them. */
export interface ResolvedRoute {
  settings: RouteSettings
  router: MessageRouter | undefined
}

/**
 * Validates a route's `config.ws` and merges it over the plugin options.
 * Returns undefined for routes the plugin does not manage.
 */
export function resolveRouteOptions (url: string, input: unknown, options: ResolvedOptions): ResolvedRoute | undefined {
  if (input === false) return undefined
  const raw = (input ?? {}) as RouteWsOptions
  if (typeof raw !== 'object') throw new InvalidRouteOptionsError(url, `Expected \`config.ws\` to be an object or false, got \`${show(input)}\``)
  const { identify, authenticate, messages, ...rest } = raw
  for (const [name, fn] of [['identify', identify], ['authenticate', authenticate]] as const) {
    if (fn !== undefined && typeof fn !== 'function') {
      throw new InvalidRouteOptionsError(url, `Expected \`config.ws.${name}\` to be a function, got \`${show(fn)}\``)
    }
  }
  const result = check(RouteOptionsSchema, rest, 'config.ws.', false, ['identify', 'authenticate', 'messages'])
  if (result.problem !== undefined) throw new InvalidRouteOptionsError(url, result.problem)
  const route = result.value
  if (route.managed === false) return undefined

  const heartbeat: HeartbeatOptions = route.heartbeat === false
    ? { ...options.heartbeat, enabled: false }
    : { ...options.heartbeat, ...route.heartbeat }
  if (heartbeat.enabled && heartbeat.timeout <= heartbeat.interval) {
    throw new InvalidRouteOptionsError(url, `Expected \`config.ws.heartbeat.timeout\` to be greater than the interval (${heartbeat.interval}), got \`${heartbeat.timeout}\``)
  }
  const { maxConnections = 0, maxConnectionsPerUser = 0, ...limits } = route.limits ?? {}
  const rateLimit = { ...options.rateLimit, ...route.rateLimit }
  const settings: RouteSettings = {
    url,
    identify: identify ?? options.identify,
    rooms: [...new Set(route.rooms ?? [])],
    limits: { ...options.limits, ...limits },
    routeMaxConnections: maxConnections,
    routeMaxConnectionsPerUser: maxConnectionsPerUser,
    heartbeat,
    reconnect: route.reconnect === undefined || route.reconnect === false
      ? undefined
      : { replay: true, maxDisconnect: options.reconnect.maxDisconnect, ...(route.reconnect === true ? {} : route.reconnect) },
    backpressure: { ...options.backpressure, ...route.backpressure },
    flushDelay: route.flush?.delay ?? options.flush.delay,
    presence: route.presence === undefined || route.presence === false ? undefined : { fields: route.presence === true ? undefined : route.presence.fields },
    rateLimit: resolveRateLimit(rateLimit),
    violations: { maxViolations: rateLimit.maxViolations, window: rateLimit.window },
    allowedOrigins: toSet(route.allowedOrigins ?? options.allowedOrigins),
    auth: resolveAuth(url, authenticate, route.auth),
    routed: messages !== undefined,
    connections: 0
  }
  return { settings, router: messages === undefined ? undefined : compileRouter(url, messages) }
}

function toSet (origins: string[] | undefined): ReadonlySet<string> | undefined {
  return origins === undefined ? undefined : new Set(origins)
}
