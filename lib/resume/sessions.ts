/*
 * Sessions of resumable connections that went away: who they were and which rooms they
 * were in, kept for `maxDisconnect` ms so the client can come back. One unref'd timer
 * sweeps the expired ones.
 *
 * A session taken by a resume leaves a fence for `maxDisconnect` ms: the generation the
 * resumed connection has. A save of an older generation is refused, so that an instance
 * that notices a half-open socket late (the client had resumed elsewhere meanwhile) does
 * not put back a session that is behind the client's.
 */

export interface Session {
  clientId: string
  userId: string | undefined
  metadata: Record<string, unknown>
  rooms: string[]
  /** The replay log its offsets belong to (the id of the instance it was connected to). */
  stream: string
  /** When its connection was made (ms since the epoch). */
  connectedAt: number
  /** The instance where its connection is still open (half-open), when it is not this one. */
  liveOn?: string
  expiresAt: number
  /** Protocol 2: how many of the client's frames the server had (absent for protocol 1). */
  received?: number
  /** The count is a snapshot that may be behind (the presence of an instance that died, or of a half-open socket there). */
  uncertain?: boolean
  /** How many times the client resumed before this session's connection (absent: 0). */
  generation?: number
  /**
   * A resumed connection that ended before the client was heard from gave its used token back
   * (resumption.ts): the client that never got its welcome comes back with that token and an
   * offset of the log it resumed from, which is not `stream` when that was another instance's.
   */
  before?: SessionOrigin & { nonce: string }
}

/** Where a session's offsets are counted: the log, and when its connection was made. */
export interface SessionOrigin {
  stream: string
  connectedAt: number
}

/** What a taken session leaves: the generation of the connection that resumed it. */
export interface Fence {
  fence: true
  generation: number
  expiresAt: number
}

export class SessionStore {
  #sessions = new Map<string, Session | Fence>()
  #timer: NodeJS.Timeout | undefined = undefined
  #sweepEvery: number
  #fenceFor: number

  /** `fenceForMs`: how long a taken session's fence stands (`reconnect.maxDisconnect`). */
  constructor (sweepEveryMs: number, fenceForMs: number) {
    this.#sweepEvery = sweepEveryMs
    this.#fenceFor = fenceForMs
  }

  /** Sessions and fences kept. */
  get size (): number {
    return this.#sessions.size
  }

  /** Keeps the session; false (and nothing kept) when a newer connection of the client took its place. */
  save (session: Session): boolean {
    const kept = this.#sessions.get(session.clientId)
    if (kept !== undefined && kept.expiresAt > Date.now() && (kept.generation ?? 0) > (session.generation ?? 0)) return false
    this.#sessions.set(session.clientId, session)
    if (this.#timer === undefined) {
      this.#timer = setInterval(() => this.sweep(Date.now()), this.#sweepEvery)
      this.#timer.unref()
    }
    return true
  }

  /** Returns the session, unless it has expired, and leaves its fence. */
  take (clientId: string, now: number): Session | undefined {
    const session = this.#sessions.get(clientId)
    if (session === undefined || 'fence' in session) return undefined
    if (session.expiresAt <= now) {
      this.#sessions.delete(clientId)
      return undefined
    }
    this.#sessions.set(clientId, { fence: true, generation: (session.generation ?? 0) + 1, expiresAt: now + this.#fenceFor })
    return session
  }

  sweep (now: number): void {
    for (const [id, session] of this.#sessions) {
      if (session.expiresAt <= now) this.#sessions.delete(id)
    }
  }

  close (): void {
    clearInterval(this.#timer)
    this.#timer = undefined
    this.#sessions.clear()
  }
}
