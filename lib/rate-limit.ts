import type { ManagedConnection } from './connection.ts'
import type { ResolvedRateLimit } from './route-options.ts'

/*
 * Inbound rate limits: a token bucket per connection for messages and one for bytes,
 * refilled lazily when a message arrives (no timer), and a count of violations in a
 * window that decides when a connection has abused enough to be closed.
 */

/** True when the message may pass; takes its tokens. */
export function takeTokens (conn: ManagedConnection, limit: ResolvedRateLimit, size: number, now: number): boolean {
  if (conn.refilledAt === 0) {
    conn.tokens = limit.burst
    conn.byteTokens = limit.bytesPerSecond
  } else {
    const seconds = (now - conn.refilledAt) / 1000
    conn.tokens = Math.min(limit.burst, conn.tokens + seconds * limit.messagesPerSecond)
    conn.byteTokens = Math.min(limit.bytesPerSecond, conn.byteTokens + seconds * limit.bytesPerSecond)
  }
  conn.refilledAt = now
  if (limit.messagesPerSecond > 0 && conn.tokens < 1) return false
  if (limit.bytesPerSecond > 0 && conn.byteTokens < size) return false
  conn.tokens -= 1
  conn.byteTokens -= size
  return true
}

/** How long until one more message of `size` bytes would pass, in ms. */
export function retryAfter (conn: ManagedConnection, limit: ResolvedRateLimit, size: number): number {
  const messages = limit.messagesPerSecond > 0 ? (1 - conn.tokens) / limit.messagesPerSecond : 0
  const bytes = limit.bytesPerSecond > 0 ? (size - conn.byteTokens) / limit.bytesPerSecond : 0
  return Math.max(1, Math.ceil(Math.max(messages, bytes) * 1000))
}

/** A per-type bucket: messages only. */
export interface Bucket { tokens: number, refilledAt: number }

export function takeBucket (bucket: Bucket, perSecond: number, burst: number, now: number): boolean {
  bucket.tokens = bucket.refilledAt === 0 ? burst : Math.min(burst, bucket.tokens + (now - bucket.refilledAt) / 1000 * perSecond)
  bucket.refilledAt = now
  if (bucket.tokens < 1) return false
  bucket.tokens -= 1
  return true
}

/** Counts a violation; true when the connection went over `maxViolations` within the window. */
export function countViolation (conn: ManagedConnection, limit: { maxViolations: number, window: number }, now: number): boolean {
  if (now - conn.violationsSince > limit.window) {
    conn.violations = 0
    conn.violationsSince = now
  }
  return ++conn.violations > limit.maxViolations
}
