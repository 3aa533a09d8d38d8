import type { ManagedConnection } from './connection.ts'
import type { Registry } from './registry.ts'
import type { RouteSettings } from './route-settings.ts'
import { CloseCode } from './close-codes.ts'

/** A refusal: why, with which close code, in words for logs and errors. */
export interface LimitViolation {
  reason: 'connection_limit' | 'user_limit' | 'ip_limit'
  code: number
  message: string
}

/** What a registration is checked against: the indexes, the route, the caps, who comes. */
export interface LimitCheck {
  registry: Registry
  route: RouteSettings
  /** The instance-wide cap; 0 = unlimited. */
  maxConnections: number
  userId: string | undefined
  /** The connection with the same clientId that the new one would replace: it does not count. */
  replacing: ManagedConnection | undefined
  /** The user's connections on the other instances. Default 0. */
  elsewhere?: number
  /**
   * The client's address, with `maxPerIp` (0 or absent = unlimited): upgrades that raced past the
   * pre-upgrade check (an async identify) are counted again here.
   */
  ip?: string
  maxPerIp?: number
}

/** Checks whether one more connection may be registered. */
export function checkConnectionLimits ({ registry, route, maxConnections, userId, replacing, elsewhere = 0, ip, maxPerIp = 0 }: LimitCheck): LimitViolation | undefined {
  const instanceCount = registry.size - (replacing === undefined ? 0 : 1)
  if (maxConnections > 0 && instanceCount >= maxConnections) {
    return { reason: 'connection_limit', code: CloseCode.TRY_AGAIN_LATER, message: `this instance is at maxConnections (${maxConnections})` }
  }
  const routeCount = route.connections - (replacing?.route === route ? 1 : 0)
  if (route.routeMaxConnections > 0 && routeCount >= route.routeMaxConnections) {
    return { reason: 'connection_limit', code: CloseCode.TRY_AGAIN_LATER, message: `route ${route.url} is at maxConnections (${route.routeMaxConnections})` }
  }
  if (ip !== undefined && maxPerIp > 0 && registry.ipCount(ip) >= maxPerIp) {
    return { reason: 'ip_limit', code: CloseCode.TRY_AGAIN_LATER, message: `too many connections from this address (maxConnectionsPerIp ${maxPerIp})` }
  }
  if (userId === undefined) return undefined
  const perUser = route.limits.maxConnectionsPerUser
  const perUserOnRoute = route.routeMaxConnectionsPerUser
  if (perUser === 0 && perUserOnRoute === 0) return undefined
  const connections = registry.userConnections(userId)
  let total = connections.size + elsewhere
  let onRoute = 0
  for (const conn of connections) {
    if (conn === replacing) {
      total--
    } else if (conn.route === route) {
      onRoute++
    }
  }
  if (perUser > 0 && total >= perUser) {
    return { reason: 'user_limit', code: CloseCode.TOO_MANY_CONNECTIONS, message: `user ${userId} is at maxConnectionsPerUser (${perUser})` }
  }
  if (perUserOnRoute > 0 && onRoute >= perUserOnRoute) {
    return { reason: 'user_limit', code: CloseCode.TOO_MANY_CONNECTIONS, message: `user ${userId} is at maxConnectionsPerUser (${perUserOnRoute}) on route ${route.url}` }
  }
  return undefined
}

/** The instance-wide and route-wide caps, checked before the upgrade (HTTP 503). */
export function checkCapacity (registry: Registry, route: RouteSettings, maxConnections: number): string | undefined {
  if (maxConnections > 0 && registry.size >= maxConnections) return `this instance is at maxConnections (${maxConnections})`
  if (route.routeMaxConnections > 0 && route.connections >= route.routeMaxConnections) return `route ${route.url} is at maxConnections (${route.routeMaxConnections})`
  return undefined
}
