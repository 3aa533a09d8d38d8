import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { InvalidTokenError, TokenExpiredError } from '../errors.ts'

/*
 * Reconnect tokens: `base64url(payload) . base64url(HMAC-SHA256(secret, payload))`.
 * The payload carries the clientId, the userId, issue and expiry times and a random
 * nonce. The first secret signs, every secret verifies (rotation). A token is good
 * once: its nonce is claimed when it is validated and kept until the token would
 * have expired anyway.
 */

const VERSION = 1

/** What a valid token says. */
export interface ReconnectClaims {
  clientId: string
  userId: string | undefined
  /** ms since the epoch */
  issuedAt: number
  expiresAt: number
  nonce: string
}

interface Payload { v: number, c: string, u?: string, iat: number, exp: number, n: string }

/** Where used nonces are kept; in memory here, shared by all instances in the Redis adapter. */
export interface NonceStore {
  /** Records the nonce until `expiresAt`; false if it was already recorded. */
  claim (nonce: string, expiresAt: number): boolean | Promise<boolean>
  /**
   * Gives a claimed nonce back, paired with `partner` (an unclaimed one): whichever of the two
   * is claimed first claims the other too, so one of the two tokens can still be used, once
   * (a resume whose welcome, carrying `partner`, may never have arrived). Optional: without
   * it every token stays single-use, as before.
   */
  release? (used: { nonce: string, expiresAt: number }, partner: { nonce: string, expiresAt: number }): void
  /**
   * Forgets a claim whose resume never happened (the client went before its upgrade was
   * done, so no token replaced this one): the token can resume once more. Optional: without
   * it such a token stays spent.
   */
  unclaim? (nonce: string): void
  /**
   * True when other instances claim here too (Redis, the store of a MemoryBus): a claim may
   * belong to an upgrade still in flight on one of them, which gives it back if its client
   * went before the upgrade (`unclaim`). A validation may then try the claim again a while
   * (`ClaimRetry`).
   */
  readonly shared?: boolean
  close (): void
}

/**
 * How long a validation tries again to claim a nonce held elsewhere (a shared store): until
 * `until` (ms since the epoch), while `gone()` says the client still waits.
 */
export interface ClaimRetry {
  until: number
  gone: () => boolean
}

/** How often a claim held elsewhere is tried again. */
const CLAIM_POLL_MS = 50

/** Used nonces in a Map, swept by one unref'd timer. */
export class MemoryNonceStore implements NonceStore {
  #used = new Map<string, number>()
  /** Released nonces and their partners, both ways, with the partner's expiry. */
  #pairs = new Map<string, { nonce: string, expiresAt: number }>()
  #timer: NodeJS.Timeout

  constructor (sweepEveryMs = 60_000) {
    this.#timer = setInterval(() => this.sweep(Date.now()), sweepEveryMs)
    this.#timer.unref()
  }

  get size (): number {
    return this.#used.size
  }

  release (used: { nonce: string, expiresAt: number }, partner: { nonce: string, expiresAt: number }): void {
    this.#used.delete(used.nonce)
    this.#pairs.set(used.nonce, partner)
    this.#pairs.set(partner.nonce, used)
  }

  unclaim (nonce: string): void {
    this.#used.delete(nonce)
  }

  claim (nonce: string, expiresAt: number): boolean {
    if (this.#used.has(nonce)) return false
    this.#used.set(nonce, expiresAt)
    const partner = this.#pairs.get(nonce)
    if (partner === undefined) return true
    this.#pairs.delete(nonce)
    this.#pairs.delete(partner.nonce)
    // the other of the pair was used first: this one is spent with it
    if (this.#used.has(partner.nonce)) return false
    this.#used.set(partner.nonce, partner.expiresAt)
    return true
  }

  /** Forgets nonces whose tokens have expired: those tokens fail on their expiry anyway. */
  sweep (now: number): void {
    for (const [nonce, expiresAt] of this.#used) {
      if (expiresAt <= now) this.#used.delete(nonce)
    }
    for (const [nonce, partner] of this.#pairs) {
      if (partner.expiresAt <= now) this.#pairs.delete(nonce)
    }
  }

  close (): void {
    clearInterval(this.#timer)
    this.#used.clear()
  }
}

export interface TokenOptions {
  /** Signing secrets, newest first: the first signs, all verify. */
  secrets: string[]
  /** How long a token is good for, in ms. */
  ttl: number
  nonces: NonceStore
  now?: () => number
}

export class ReconnectTokens {
  #keys: Buffer[]
  #ttl: number
  #nonces: NonceStore
  #now: () => number

  constructor (options: TokenOptions) {
    this.#keys = options.secrets.map(s => Buffer.from(s))
    this.#ttl = options.ttl
    this.#nonces = options.nonces
    this.#now = options.now ?? Date.now
  }

  generate (clientId: string, userId?: string): string {
    return this.issue(clientId, userId).token
  }

  /** A token with its nonce and expiry (to revoke it later without reading it back). */
  issue (clientId: string, userId?: string): { token: string, nonce: string, expiresAt: number } {
    const iat = this.#now()
    const payload: Payload = { v: VERSION, c: clientId, iat, exp: iat + this.#ttl, n: randomBytes(16).toString('base64url') }
    if (userId !== undefined) payload.u = userId
    const body = Buffer.from(JSON.stringify(payload)).toString('base64url')
    return { token: `${body}.${sign(this.#keys[0], body).toString('base64url')}`, nonce: payload.n, expiresAt: payload.exp }
  }

  /**
   * Checks signature (any secret, constant time), shape, expiry, then claims the nonce (with
   * `retry`, again and again a while when a shared store has it claimed).
   * Throws TokenExpiredError or InvalidTokenError; never says which secret matched.
   */
  async validate (token: unknown, retry?: ClaimRetry): Promise<ReconnectClaims> {
    if (typeof token !== 'string' || token.length > 2048) throw new InvalidTokenError('not a token')
    const dot = token.indexOf('.')
    if (dot <= 0 || dot !== token.lastIndexOf('.')) throw new InvalidTokenError('malformed')
    const body = token.slice(0, dot)
    const signature = Buffer.from(token.slice(dot + 1), 'base64url')
    if (!this.#keys.some(key => equal(sign(key, body), signature))) throw new InvalidTokenError('bad signature')
    const payload = parse(body)
    if (payload === undefined) throw new InvalidTokenError('malformed payload')
    if (payload.exp <= this.#now()) throw new TokenExpiredError(new Date(payload.exp).toISOString())
    if (!await this.#claim(payload, retry)) throw new InvalidTokenError('already used')
    return { clientId: payload.c, userId: payload.u, issuedAt: payload.iat, expiresAt: payload.exp, nonce: payload.n }
  }

  /**
   * Claims the token's nonce. A shared store's claim may be an upgrade's on another instance
   * whose client went before it was done: that one gives it back once its lookup is over, so
   * with `retry` the claim is tried again every CLAIM_POLL_MS until it succeeds, the time is up
   * or the client is gone. A spent token fails that much later.
   */
  async #claim (payload: Payload, retry: ClaimRetry | undefined): Promise<boolean> {
    while (!await this.#nonces.claim(payload.n, payload.exp)) {
      if (retry === undefined || this.#nonces.shared !== true || Date.now() + CLAIM_POLL_MS > retry.until || retry.gone()) return false
      await new Promise(resolve => setTimeout(resolve, CLAIM_POLL_MS))
    }
    return true
  }
}

function sign (key: Buffer, body: string): Buffer {
  return createHmac('sha256', key).update(body).digest()
}

function equal (a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b)
}

function parse (body: string): Payload | undefined {
  let value: Partial<Payload>
  try {
    value = JSON.parse(Buffer.from(body, 'base64url').toString()) as Partial<Payload>
  } catch {
    return undefined
  }
  const ok = value !== null && typeof value === 'object' && value.v === VERSION &&
    typeof value.c === 'string' && value.c !== '' && (value.u === undefined || typeof value.u === 'string') &&
    Number.isSafeInteger(value.iat) && Number.isSafeInteger(value.exp) && typeof value.n === 'string' && value.n !== ''
  return ok ? value as Payload : undefined
}
