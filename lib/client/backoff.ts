/*
 * Reconnect delays: exponential backoff with full jitter (a uniform draw between 0 and a
 * cap that grows with each failed attempt), so that many clients dropped at once do not
 * all come back at once.
 */

export interface ReconnectOptions {
  /** The cap of the first delay, in ms (default 500). */
  initialDelay: number
  /** The largest cap, in ms (default 30 s). */
  maxDelay: number
  /** How much the cap grows per failed attempt (default 2). */
  multiplier: number
  /** Attempts in a row before giving up; 0 tries forever (default 0). */
  maxAttempts: number
  /** After 1013 (try again later: the server is full) the cap is multiplied by this (default 4). */
  tryAgainLaterFactor: number
  /** A connection that stayed open this long starts the count of attempts again, in ms (default 5 s). */
  resetAfter: number
}

export const DEFAULT_RECONNECT: Readonly<ReconnectOptions> = {
  initialDelay: 500,
  maxDelay: 30_000,
  multiplier: 2,
  maxAttempts: 0,
  tryAgainLaterFactor: 4,
  resetAfter: 5000
}

type Caps = Pick<ReconnectOptions, 'initialDelay' | 'maxDelay' | 'multiplier' | 'tryAgainLaterFactor'>

/** The cap of the delay before reconnect attempt `attempt` (0 for the first one). */
export function backoffCap (options: Caps, attempt: number, tryAgainLater = false): number {
  const cap = Math.min(options.maxDelay, options.initialDelay * options.multiplier ** attempt)
  return tryAgainLater ? Math.min(options.maxDelay, cap * options.tryAgainLaterFactor) : cap
}

/** The delay before attempt `attempt`: a whole number of ms, uniform in [0, cap). */
export function backoffDelay (options: Caps, attempt: number, random: () => number, tryAgainLater = false): number {
  return Math.floor(random() * backoffCap(options, attempt, tryAgainLater))
}
