/*
 * Every wait of the testing client is bounded, and its timer is cleared as soon as the
 * wait ends either way: no timer outlives what it guards.
 */

/** A function for handlers that must exist but have nothing to do (socket errors surface as the close). */
export function noop (): void {}

/** `promise`, or what `onTimeout` returns (or throws) if it has not settled within `ms`. */
export async function within<T> (promise: Promise<T>, ms: number, onTimeout: () => T | Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<T>((resolve, reject) => {
    timer = setTimeout(() => {
      Promise.resolve().then(onTimeout).then(resolve, reject)
    }, ms)
  })
  try {
    return await Promise.race([promise, late])
  } finally {
    clearTimeout(timer)
  }
}
