import type { Bucket, InboundState, ManagedConnection } from '../connection.ts'
import type { ResolvedRateLimit } from '../route-settings.ts'
import { kInbound } from '../symbols.ts'

/*
 * Inbound rate limits: a token bucket per connection for messages and one for bytes,
 * refilled lazily when a message arrives (no timer), and a count of violations in a
 * window that decides when a connection has abused enough to be closed.
 */

/** Made on first use: most connections are never rate limited and never misbehave. */
function inboundOf (conn: ManagedConnection): InboundState {
  conn[kInbound] ??= { tokens: 0, byteTokens: 0, refilledAt: 0, violations: 0, violationsSince: 0 }
  return conn[kInbound]
}

/** True when the message may pass; takes its tokens. */
export function takeTokens (conn: ManagedConnection, limit: ResolvedRateLimit, size: number, now: number): boolean {
  const state = inboundOf(conn)
  if (state.refilledAt === 0) {
    state.tokens = limit.burst
    state.byteTokens = limit.bytesPerSecond
  } else {
    const seconds = (now - state.refilledAt) / 1000
    state.tokens = Math.min(limit.burst, state.tokens + seconds * limit.messagesPerSecond)
    state.byteTokens = Math.min(limit.bytesPerSecond, state.byteTokens + seconds * limit.bytesPerSecond)
  }
  state.refilledAt = now
  if (limit.messagesPerSecond > 0 && state.tokens < 1) return false
  if (limit.bytesPerSecond > 0 && state.byteTokens < size) return false
  state.tokens -= 1
  state.byteTokens -= size
  return true
}

/** How long until one more message of `size` bytes would pass, in ms (after takeTokens refused it). */
export function retryAfter (conn: ManagedConnection, limit: ResolvedRateLimit, size: number): number {
  const state = inboundOf(conn)
  const messages = limit.messagesPerSecond > 0 ? (1 - state.tokens) / limit.messagesPerSecond : 0
  const bytes = limit.bytesPerSecond > 0 ? (size - state.byteTokens) / limit.bytesPerSecond : 0
  return Math.max(1, Math.ceil(Math.max(messages, bytes) * 1000))
}

export function takeBucket (bucket: Bucket, perSecond: number, burst: number, now: number): boolean {
  bucket.tokens = bucket.refilledAt === 0 ? burst : Math.min(burst, bucket.tokens + (now - bucket.refilledAt) / 1000 * perSecond)
  bucket.refilledAt = now
  if (bucket.tokens < 1) return false
  bucket.tokens -= 1
  return true
}

/** Counts a violation; true when the connection went over `maxViolations` within the window. */
export function countViolation (conn: ManagedConnection, limit: { maxViolations: number, window: number }, now: number): boolean {
  const state = inboundOf(conn)
  if (now - state.violationsSince > limit.window) {
    state.violations = 0
    state.violationsSince = now
  }
  return ++state.violations > limit.maxViolations
}
