/*
 * A small seeded PRNG (a 32-bit xorshift-multiply generator over a splitmix-style seed
 * scramble) so that every fuzz case can be replayed from (seed, case number).
 */

export class Rng {
  #state: number

  constructor (seed: number) {
    this.#state = scramble(seed >>> 0) || 0x9e3779b9
  }

  /** A 32-bit unsigned integer. */
  next (): number {
    let x = this.#state
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    this.#state = x >>> 0
    return Math.imul(this.#state, 0x2545f491) >>> 0
  }

  /** A float in [0, 1). */
  float (): number {
    return this.next() / 0x1_0000_0000
  }

  /** An integer in [lo, hi]. */
  int (lo: number, hi: number): number {
    return lo + Math.floor(this.float() * (hi - lo + 1))
  }

  chance (p: number): boolean {
    return this.float() < p
  }

  pick<T> (items: readonly T[]): T {
    return items[this.int(0, items.length - 1)]
  }

  /** Picks by weight: `[[weight, value], …]`. */
  weighted<T> (items: ReadonlyArray<readonly [number, T]>): T {
    let total = 0
    for (const [w] of items) total += w
    let r = this.float() * total
    for (const [w, v] of items) {
      r -= w
      if (r < 0) return v
    }
    return items[items.length - 1][1]
  }

  bytes (n: number): Buffer {
    const out = Buffer.allocUnsafe(n)
    for (let i = 0; i < n; i++) out[i] = this.next() & 0xff
    return out
  }
}

function scramble (x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b) >>> 0
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35) >>> 0
  return (x ^ (x >>> 16)) >>> 0
}

/** The generator of case `index` under `seed`: independent of the order cases run in. */
export function caseRng (seed: number, index: number): Rng {
  return new Rng(scramble((seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0))
}
