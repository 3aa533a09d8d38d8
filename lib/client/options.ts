import type { Clock } from './clock.ts'
import { systemClock } from './clock.ts'
import { DEFAULT_HEARTBEAT, type HeartbeatOptions } from './heartbeat.ts'
import { DEFAULT_RECONNECT, type ReconnectOptions } from './backoff.ts'
import type { SocketConstructor } from './socket.ts'

/*
 * The client's options: defaults filled in and values checked once, in the constructor.
 */

export type ProtocolMode = 'auto' | 'stabilizer' | 'plain'

export interface ClientOptions {
  /** The WebSocket class: default `globalThis.WebSocket` (browsers, Node 22+); in Node 20 pass the `ws` package's. */
  WebSocket?: SocketConstructor
  /** Subprotocols, passed to the WebSocket as they are. */
  protocols?: string | string[]
  /**
   * `auto` (default): the resume protocol when the server's first frame is a welcome, plain
   * otherwise. `stabilizer`: the route speaks it; every connection waits for its welcome
   * before it counts as open. `plain`: frames reach the app as they come, no resume.
   */
  protocol?: ProtocolMode
  /** How long an attempt may take to open (and be welcomed, when a welcome is awaited), in ms (default 10 s). */
  openTimeout?: number
  /** Reconnect settings, or false to never reconnect. */
  reconnect?: Partial<ReconnectOptions> | false
  /** The heartbeat watch, or false (the server's pings are still answered). */
  heartbeat?: Partial<HeartbeatOptions> | false
  /** How many sends may wait while disconnected (default 1000); one more throws `WS_CLIENT_QUEUE_FULL`. */
  maxQueueSize?: number
  /** How long `request` waits for an answer by default, in ms (default 10 s). */
  requestTimeout?: number
  /** The random source of the jitter, returning [0, 1) (default `Math.random`). */
  random?: () => number
  /** The clock and timer functions (default the global ones). */
  clock?: Partial<Clock>
}

export interface ResolvedOptions {
  WebSocket: SocketConstructor
  protocols: string | string[] | undefined
  protocol: ProtocolMode
  openTimeout: number
  reconnect: ReconnectOptions | undefined
  heartbeat: HeartbeatOptions | undefined
  maxQueueSize: number
  requestTimeout: number
  random: () => number
  clock: Clock
}

const MODES: readonly unknown[] = ['auto', 'stabilizer', 'plain']
const STARTS: readonly unknown[] = ['server-ping', 'open']

export function resolveOptions (options: ClientOptions): ResolvedOptions {
  const WebSocket = options.WebSocket ?? (globalThis as { WebSocket?: SocketConstructor }).WebSocket
  if (typeof WebSocket !== 'function') throw new TypeError('Expected a WebSocket class: pass one as the `WebSocket` option (in Node 20 the `ws` package\'s), got none')
  const protocol = options.protocol ?? 'auto'
  oneOf('protocol', protocol, MODES)
  const resolved: ResolvedOptions = {
    WebSocket,
    protocols: options.protocols,
    protocol,
    openTimeout: atLeast('openTimeout', options.openTimeout ?? 10_000, 1),
    reconnect: options.reconnect === false ? undefined : { ...DEFAULT_RECONNECT, ...options.reconnect },
    heartbeat: options.heartbeat === false ? undefined : { ...DEFAULT_HEARTBEAT, ...options.heartbeat },
    maxQueueSize: atLeast('maxQueueSize', options.maxQueueSize ?? 1000, 0),
    requestTimeout: atLeast('requestTimeout', options.requestTimeout ?? 10_000, 1),
    random: options.random ?? Math.random,
    clock: { ...systemClock, ...options.clock }
  }
  const r = resolved.reconnect
  if (r !== undefined) {
    atLeast('reconnect.initialDelay', r.initialDelay, 0)
    atLeast('reconnect.maxDelay', r.maxDelay, 0)
    atLeast('reconnect.multiplier', r.multiplier, 1)
    atLeast('reconnect.maxAttempts', r.maxAttempts, 0)
    atLeast('reconnect.tryAgainLaterFactor', r.tryAgainLaterFactor, 1)
    atLeast('reconnect.resetAfter', r.resetAfter, 0)
  }
  const h = resolved.heartbeat
  if (h !== undefined) {
    atLeast('heartbeat.interval', h.interval, 1)
    atLeast('heartbeat.timeout', h.timeout, 1)
    oneOf('heartbeat.start', h.start, STARTS)
  }
  return resolved
}

function atLeast (name: string, value: unknown, min: number): number {
  if (typeof value !== 'number' || !(value >= min) || value === Infinity) {
    throw new TypeError(`Expected \`${name}\` to be a number >= ${min}, got \`${String(value)}\``)
  }
  return value
}

function oneOf (name: string, value: unknown, allowed: readonly unknown[]): void {
  if (!allowed.includes(value)) throw new TypeError(`Expected \`${name}\` to be one of ${allowed.map(a => `\`${String(a)}\``).join(', ')}, got \`${String(value)}\``)
}
