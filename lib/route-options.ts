import { Type } from '@sinclair/typebox'
import { InvalidRouteOptionsError } from './errors.ts'
import { HeartbeatModeSchema, check, show, type HeartbeatOptions, type LimitsOptions, type ResolvedOptions } from './options.ts'
import type { IdentifyFn } from './identity.ts'

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
  limits: Type.Optional(RouteLimitsSchema),
  heartbeat: Type.Optional(RouteHeartbeatSchema),
  /** Resume protocol on this route: welcome frame with a token, resume, and (with replay) offsets and replay. */
  reconnect: Type.Optional(Type.Union([
    Type.Boolean(),
    Type.Object({
      replay: Type.Optional(Type.Boolean({ expected: 'a boolean' })),
      maxDisconnect: Type.Optional(Type.Integer({ minimum: 1, expected: 'a positive integer number of milliseconds' }))
    }, { additionalProperties: false, expected: 'an object' })
  ], { expected: 'a boolean or { replay?, maxDisconnect? }' }))
}, { additionalProperties: false, expected: 'an object' })

/** What a route may put in `config.ws`. */
export interface RouteWsOptions {
  /** Whether the plugin manages this WebSocket route. Default: true. */
  managed?: boolean
  /** How to identify a client on this route (wins over the plugin's `identify`). */
  identify?: IdentifyFn
  /** Rooms every connection of this route joins on connect. */
  rooms?: string[]
  /** Limits for this route: see RouteLimitsSchema. */
  limits?: { maxConnections?: number, maxConnectionsPerUser?: number, maxMessageSize?: number, maxQueuedMessages?: number, maxQueuedBytes?: number }
  /** Heartbeat override for this route, or `false` to turn it off. */
  heartbeat?: false | Partial<HeartbeatOptions>
  /** The resume protocol (see PROTOCOL.md): `true`, or `{ replay?: boolean (default true), maxDisconnect?: ms }`. */
  reconnect?: boolean | { replay?: boolean, maxDisconnect?: number }
}

export interface RouteReconnect {
  replay: boolean
  maxDisconnect: number
}

/** A managed route's settings after the merge; shared by all its connections. */
export interface RouteSettings {
  readonly url: string
  readonly identify: IdentifyFn | undefined
  readonly rooms: readonly string[]
  readonly limits: LimitsOptions
  /** Route-only caps, counted on this route; 0 = unlimited. */
  readonly routeMaxConnections: number
  readonly routeMaxConnectionsPerUser: number
  readonly heartbeat: HeartbeatOptions
  /** The resume protocol, when the route has it. */
  readonly reconnect: RouteReconnect | undefined
  /** Live connections on this route. */
  connections: number
}

/** The settings of connections registered without a route (`wsManager.register`). */
export function defaultRouteSettings (options: ResolvedOptions): RouteSettings {
  return {
    url: '(programmatic)',
    identify: options.identify,
    rooms: [],
    limits: options.limits,
    routeMaxConnections: 0,
    routeMaxConnectionsPerUser: 0,
    heartbeat: options.heartbeat,
    reconnect: undefined,
    connections: 0
  }
}

/**
 * Validates a route's `config.ws` and merges it over the plugin options.
 * Returns undefined for routes the plugin does not manage.
 */
export function resolveRouteOptions (url: string, input: unknown, options: ResolvedOptions): RouteSettings | undefined {
  if (input === false) return undefined
  const raw = (input ?? {}) as RouteWsOptions
  if (typeof raw !== 'object') throw new InvalidRouteOptionsError(url, `Expected \`config.ws\` to be an object or false, got \`${show(input)}\``)
  const { identify, ...rest } = raw
  if (identify !== undefined && typeof identify !== 'function') {
    throw new InvalidRouteOptionsError(url, `Expected \`config.ws.identify\` to be a function, got \`${show(identify)}\``)
  }
  const result = check(RouteOptionsSchema, rest, 'config.ws.')
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
  return {
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
    connections: 0
  }
}
