import type { IdentifyFn } from './identity.ts'
import type { AuthSettings } from './auth.ts'
import type { BackpressureOptions, HeartbeatOptions, LimitsOptions, RateLimitOptions, ResolvedOptions } from './options.ts'

/*
 * A managed route's settings: its `config.ws` merged over the plugin's options once, when the
 * route is added (route-options.ts), and shared by all its connections as `conn.route`.
 */

export interface ResolvedRateLimit extends RateLimitOptions {
  burst: number
}

/** The rate limits in force, or undefined when none is set (no per-message work at all). */
export function resolveRateLimit (options: RateLimitOptions): ResolvedRateLimit | undefined {
  if (options.messagesPerSecond === 0 && options.bytesPerSecond === 0) return undefined
  return { ...options, burst: options.burst ?? Math.max(1, options.messagesPerSecond) }
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
  readonly backpressure: BackpressureOptions
  /** Write coalescing window in ms (`flush.delay`); 0: none. */
  readonly flushDelay: number
  /** Room presence for the route's connections (`config.ws.presence`); `fields`: the metadata shown, all when undefined. */
  readonly presence: { readonly fields: readonly string[] | undefined } | undefined
  /** Inbound rate limits, resolved (burst filled in); undefined when there are none. */
  readonly rateLimit: ResolvedRateLimit | undefined
  /** How many violations (rate limited or invalid messages) within how long close a connection. */
  readonly violations: { maxViolations: number, window: number }
  readonly allowedOrigins: ReadonlySet<string> | undefined
  readonly auth: AuthSettings | undefined
  /** The route has typed `messages`: each data message goes to its router (which the manager holds). */
  readonly routed: boolean
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
    backpressure: options.backpressure,
    flushDelay: options.flush.delay,
    presence: undefined,
    rateLimit: resolveRateLimit(options.rateLimit),
    violations: { maxViolations: options.rateLimit.maxViolations, window: options.rateLimit.window },
    allowedOrigins: undefined,
    auth: undefined,
    routed: false,
    connections: 0
  }
}
