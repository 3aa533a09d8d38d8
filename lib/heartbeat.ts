import type { ManagedConnection } from './connection.ts'
import { slow, waitingOf, write } from './outbound/write.ts'
import { kPingSentAt, kSlowSince } from './symbols.ts'

/**
 * Liveness for every connection from one shared, unref'd timer: never a timer per
 * connection. Each tick, a connection that sent nothing for its timeout is handed to
 * `onTimeout`; one that has been quiet for about its interval gets a ping (a protocol
 * ping frame, or in `message` mode a `{"type":"ping","ts":…}` text frame, encoded once
 * per tick for all). Connections with traffic are not pinged at all.
 *
 * A connection found past its timeout is judged only after the event loop has read what is
 * waiting in the sockets (a `setImmediate` runs after the poll phase): a sweep comes in the
 * timers phase, so after the loop was held (a reconnect storm, a long handler) it would come
 * before the pongs that arrived meanwhile were read, and time out clients that answered.
 */
export class Heartbeat {
  #connections = new Set<ManagedConnection>()
  #timer: NodeJS.Timeout | undefined = undefined
  #started = false
  #tick: number
  #onTimeout: (conn: ManagedConnection, idleMs: number) => void
  /** Past their timeout at the last sweep, to be judged once the sockets were read. */
  #overdue: ManagedConnection[] = []

  constructor (tickMs: number, onTimeout: (conn: ManagedConnection, idleMs: number) => void) {
    this.#tick = tickMs
    this.#onTimeout = onTimeout
  }

  /** True while the sweep timer is armed. */
  get running (): boolean {
    return this.#timer !== undefined
  }

  /** The sweep period: the shortest heartbeat interval in use. */
  get tick (): number {
    return this.#tick
  }

  /** Makes the sweep run at least every `intervalMs` (a route with a shorter interval); routes are added before start. */
  useInterval (intervalMs: number): void {
    if (intervalMs < this.#tick) this.#tick = intervalMs
  }

  /** Tracks a connection whose route has the heartbeat on; the timer is armed by the first one. */
  add (conn: ManagedConnection): void {
    if (!conn.route.heartbeat.enabled) return
    this.#connections.add(conn)
    if (this.#started && this.#timer === undefined) this.#arm()
  }

  delete (conn: ManagedConnection): void {
    this.#connections.delete(conn)
  }

  /** From now on the timer runs while any connection is tracked (the plugin calls it in onReady). */
  start (): void {
    this.#started = true
    if (this.#timer === undefined && this.#connections.size > 0) this.#arm()
  }

  stop (): void {
    this.#started = false
    this.#disarm()
  }

  #arm (): void {
    this.#timer = setInterval(() => this.sweep(Date.now()), this.#tick)
    this.#timer.unref()
  }

  #disarm (): void {
    if (this.#timer === undefined) return
    clearInterval(this.#timer)
    this.#timer = undefined
  }

  sweep (now: number): void {
    const slack = this.#tick >> 1
    let pingFrame: { data: Buffer, binary: false } | undefined
    for (const conn of this.#connections) {
      const hb = conn.route.heartbeat
      // a slow consumer that was sent nothing since it went over the high-water mark
      if (conn[kSlowSince] > 0 && now - conn[kSlowSince] > conn.route.backpressure.grace) {
        if (waitingOf(conn) > conn.route.backpressure.highWaterMark) {
          slow(conn, `above ${conn.route.backpressure.highWaterMark} bytes for more than ${conn.route.backpressure.grace} ms`)
          continue
        }
        conn[kSlowSince] = 0
      }
      const idle = now - conn.lastSeen
      if (idle >= hb.timeout) {
        if (this.#overdue.push(conn) === 1) setImmediate(this.#judge)
        continue
      }
      const quietSince = conn[kPingSentAt] > conn.lastSeen ? conn[kPingSentAt] : conn.lastSeen
      if (now - quietSince < hb.interval - slack) continue
      conn[kPingSentAt] = now
      if (hb.mode === 'ping') {
        // ws throws only while CONNECTING, never the state of a registered socket
        conn.socket.ping()
      } else {
        pingFrame ??= { data: Buffer.from(`{"type":"ping","ts":${now}}`), binary: false }
        write(conn, pingFrame, true)
      }
    }
  }

  /** Times out the overdue connections that are still tracked and still sent nothing. */
  #judge = (): void => {
    const overdue = this.#overdue
    this.#overdue = []
    const now = Date.now()
    for (const conn of overdue) {
      const idle = now - conn.lastSeen
      // onTimeout removes it from the set; one that ended meanwhile is not there
      if (this.#connections.has(conn) && idle >= conn.route.heartbeat.timeout) this.#onTimeout(conn, idle)
    }
  }
}
