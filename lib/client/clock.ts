/*
 * Time, as the client sees it: the clock and the one timer each client has. Tests pass
 * their own to check delays without waiting for them.
 */

export interface Clock {
  /** Milliseconds since some fixed point (default `Date.now`). */
  now: () => number
  setTimeout: (callback: () => void, ms: number) => unknown
  clearTimeout: (handle: unknown) => void
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: handle => clearTimeout(handle as Parameters<typeof clearTimeout>[0])
}

/** A single timer: setting it again replaces what it was set for. */
export class Timer {
  #clock: Clock
  #handle: unknown = undefined

  constructor (clock: Clock) {
    this.#clock = clock
  }

  set (ms: number, callback: () => void): void {
    this.clear()
    this.#handle = this.#clock.setTimeout(() => {
      this.#handle = undefined
      callback()
    }, ms)
  }

  clear (): void {
    if (this.#handle === undefined) return
    this.#clock.clearTimeout(this.#handle)
    this.#handle = undefined
  }
}
