import type { FastifyBaseLogger } from 'fastify'
import type { RawData } from 'ws'
import type { DisconnectReason, ManagedConnection } from '../connection.ts'
import type { Stats, InboundRejection } from '../stats.ts'
import { CloseCode } from '../close-codes.ts'
import { Deadlines } from '../deadlines.ts'
import { authenticateRequest, isFailure } from '../auth.ts'
import { write } from '../outbound/write.ts'
import { writeExchange } from '../outbound/exchange.ts'
import { errorFrame } from '../resume/protocol.ts'
import { countViolation, retryAfter } from './rate-limit.ts'
import type { MessageRouter, RouterEvents } from './router.ts'
import type { RouteSettings } from '../route-settings.ts'
import { kBuckets, kRequest } from '../symbols.ts'

/*
 * What the plugin does with inbound messages that break a rule, and with credentials
 * that expire: error frames with stable codes, violations counted per connection (too
 * many close it), the message router's outcomes, in-band credential refresh, and one
 * timer for every connection's credential expiry.
 */

export interface GuardHost {
  end (conn: ManagedConnection, code: number, reason: string, why: DisconnectReason): void
  fail (err: unknown, conn: ManagedConnection, message: string): void
  readonly stats: Stats
  readonly log: FastifyBaseLogger
}

export class InboundGuard implements RouterEvents {
  #host: GuardHost
  readonly expiries: Deadlines<ManagedConnection>
  /** The routers of the routes with typed `messages`. */
  readonly routers = new Map<RouteSettings, MessageRouter>()

  constructor (host: GuardHost) {
    this.#host = host
    this.expiries = new Deadlines(conn => host.end(conn, CloseCode.UNAUTHORIZED, 'credentials expired', 'token_expired'))
  }

  /** Over the rate limit: dropped with an error frame; persistent abuse closes with 4429. */
  rateLimited (conn: ManagedConnection, size: number): void {
    const limit = conn.route.rateLimit!
    this.#reject(conn, 'RATE_LIMITED', 'over the rate limit: message dropped', { retryAfterMs: retryAfter(conn, limit, size) })
  }

  /** Also the server's requests' answers that fit no request (requests.ts). */
  rejected (conn: ManagedConnection, code: InboundRejection, message: string, id: unknown): void {
    this.#reject(conn, code, message, id === undefined ? undefined : { id })
  }

  #reject (conn: ManagedConnection, code: InboundRejection, message: string, extra: { id?: unknown, retryAfterMs?: number } | undefined): void {
    this.#host.stats.inboundRejected(code)
    const frame = errorFrame(code, message, extra)
    if (extra?.id === undefined) write(conn, { data: frame, binary: false }, true)
    else writeExchange(conn, frame)
    if (!countViolation(conn, conn.route.violations, Date.now())) return
    if (code === 'RATE_LIMITED') this.#host.end(conn, CloseCode.RATE_LIMITED, 'rate limited', 'rate_limited')
    else this.#host.end(conn, CloseCode.POLICY_VIOLATION, 'too many invalid messages', 'invalid_messages')
  }

  /** A handler threw or rejected: logged with the connection, answered with INTERNAL; the connection stays. */
  failed (conn: ManagedConnection, err: unknown, id: unknown): void {
    this.#host.fail(err, conn, 'message handler failed')
    if (id === undefined) write(conn, { data: errorFrame('INTERNAL', 'the handler failed'), binary: false }, true)
    else writeExchange(conn, errorFrame('INTERNAL', 'the handler failed', { id }))
  }

  answer (conn: ManagedConnection, frame: string): void {
    writeExchange(conn, Buffer.from(frame))
  }

  /** A message for the route's router. */
  route (conn: ManagedConnection, data: RawData, isBinary: boolean, redelivered: boolean): void {
    this.routers.get(conn.route)!.route(conn, conn[kRequest]!, data, isBinary, this, () => (conn[kBuckets] ??= new Map()), redelivered)
  }

  /** `{"type":"auth.refresh","token":"…"}`: new credentials for the same subject, before the old ones expire. */
  refresh (conn: ManagedConnection, data: RawData): void {
    let token: unknown
    try {
      token = (JSON.parse(data.toString()) as { token?: unknown }).token
    } catch {}
    if (typeof token !== 'string') {
      this.#reject(conn, 'INVALID_MESSAGE', 'expected {"type":"auth.refresh","token":"…"}', undefined)
      return
    }
    // a throwing authenticate is a refusal; a server error (5xx) is reported
    authenticateRequest(conn.route.auth!, conn[kRequest]!, token).then(outcome => {
      if (!conn.isOpen) return
      if (outcome === undefined || isFailure(outcome)) {
        this.#host.end(conn, CloseCode.UNAUTHORIZED, 'refresh refused', 'unauthorized')
      } else if (outcome.userId !== conn.principal?.userId) {
        this.#host.end(conn, CloseCode.FORBIDDEN, 'refresh for another subject', 'forbidden')
      } else {
        conn.principal = outcome
        if (outcome.expiresAt === undefined) this.expiries.delete(conn)
        else this.expiries.set(conn, outcome.expiresAt)
        write(conn, { data: Buffer.from(JSON.stringify({ type: 'auth.refreshed', expiresAt: outcome.expiresAt ?? null })), binary: false }, true)
      }
    }, (err: unknown) => {
      this.#host.fail(err, conn, 'credential refresh failed')
      this.#host.end(conn, CloseCode.INTERNAL_ERROR, 'credential refresh failed', 'handler_error')
    })
  }
}
