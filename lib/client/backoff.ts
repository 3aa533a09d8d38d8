/*
 * Reconnect delays: exponential backoff with full jitter (a uniform draw between 0 and
 * the capped exponential), so that many clients dropped at once do not come back at once.
 */

export interface BackoffOptions {
  /** The first delay's cap, in ms (default 500). */
  initialDelay: number
  /** The largest delay, in ms (default 30 s). */
  maxDelay: number
  /** Growth per attempt (default 2). */
  multiplier: number
  /** Attempts before giving up; 0 tries forever (default 0). */
  maxAttempts: number
  /** After 1013 (try again later) the cap is multiplied by this (default 4). */
  tryAgainLaterFactor: number
}

export const DEFAULT_BACKOFF: BackoffOptions = { initialDelay: 500, maxDelay: 30_000, multiplier: 2, maxAttempts: 0, tryAgainLaterFactor: 4 }

/** The cap of attempt `attempt` (0 for the first reconnect). */
export function backoffCap (options: BackoffOptions, attempt: number, tryAgainLater = false): number {
  const cap = Math.min(options.maxDelay, options.initialDelay * options.multiplier ** attempt)
  return tryAgainLater ? Math.min(options.maxDelay, cap * options.tryAgainLaterFactor) : cap
}

/** The delay before attempt `attempt`: uniform in [0, cap). */
export function backoffDelay (options: BackoffOptions, attempt: number, random: () => number, tryAgainLater = false): number {
  return Math.floor(random() * backoffCap(options, attempt, tryAgainLater))
}
