import type { UpstreamState } from '../connection.ts'

/*
 * Where a numbered client's count (protocol 2, PROTOCOL.md) goes on after a resume: from the
 * number of the session's frames the server had, with the client's own count (`sent`) to
 * check it against. A resume from a snapshot that may be behind (the presence of an instance
 * that crashed, or of one whose socket is half-open) marks the frames up to `sent` as possibly
 * redelivered.
 */

/** The most frames a resume may claim beyond what the server had: a count past it is out of window. */
export const MAX_RESEND = 1_048_576

/** The state of a new connection that numbers from the start, acknowledged every `every` frames. */
export function freshCount (every: number): UpstreamState {
  return { received: 0, acked: 0, redeliverUntil: 0, recorded: 0, held: 0, every }
}

/**
 * The count a connection that goes away leaves in its session: the frames it delivered. Frames
 * still held for a `message` listener that never came are dropped with the connection, so the
 * count stops before the first of them and the client sends them again.
 */
export function delivered (upstream: UpstreamState): number {
  return upstream.held > 0 ? upstream.held - 1 : upstream.received
}

/**
 * The count a resumed connection continues with, or undefined when `sent` cannot be: less
 * than the server had (the client says it sent fewer than the server received), or more
 * than `MAX_RESEND` beyond it.
 */
export function continueCount (had: number, uncertain: boolean, sent: number, every: number): UpstreamState | undefined {
  if (sent < had || sent - had > MAX_RESEND) return undefined
  return { received: had, acked: had, redeliverUntil: uncertain ? sent : had, recorded: had, held: 0, every }
}
