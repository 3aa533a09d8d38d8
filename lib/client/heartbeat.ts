/*
 * The client's side of the `message` heartbeat (PROTOCOL.md): it pings a server it has
 * not heard from for `interval`, measures the latency from the answer, and leaves a
 * server that sent nothing at all for `timeout`. One timer per client, set to the next
 * moment something is due: traffic moves the moments on without touching the timer.
 */

export interface HeartbeatOptions {
  /** Ping the server after this long without anything from it, in ms (default 25 s). */
  interval: number
  /** Leave the connection (and reconnect) after this long without anything from the server, in ms (default 60 s). */
  timeout: number
  /**
   * When the watch starts: `server-ping` (default) once the server's first `{"type":"ping"}`
   * shows it runs `heartbeat.mode: 'message'` (remembered for the reconnects), `open` at
   * once, for servers known to run it. Before, the client sends no ping, which a server in
   * `ping` mode would hand to the app as a message.
   */
  start: 'server-ping' | 'open'
}

export const DEFAULT_HEARTBEAT: HeartbeatOptions = { interval: 25_000, timeout: 60_000, start: 'server-ping' }

export type HeartbeatStep =
  | { silent: true, idle: number }
  | { silent: false, ping: boolean, wait: number }

/**
 * What is due at `now`: leaving a silent server, or a ping (none is sent while one is
 * unanswered), and how long to wait before the next look.
 */
export function heartbeatStep (options: HeartbeatOptions, now: number, lastReceived: number, pingSentAt: number): HeartbeatStep {
  const idle = now - lastReceived
  if (idle >= options.timeout) return { silent: true, idle }
  const ping = pingSentAt === 0 && idle >= options.interval
  const nextPing = pingSentAt === 0 && !ping ? options.interval - idle : Infinity
  return { silent: false, ping, wait: Math.min(options.timeout - idle, nextPing) }
}
