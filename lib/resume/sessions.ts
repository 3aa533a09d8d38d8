/*
 * Sessions of resumable connections that went away: who they were and which rooms they
 * were in, kept for `maxDisconnect` ms so the client can come back. One unref'd timer
 * sweeps the expired ones.
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
}

export class SessionStore {
  #sessions = new Map<string, Session>()
  #timer: NodeJS.Timeout | undefined = undefined
  #sweepEvery: number

  constructor (sweepEveryMs: number) {
    this.#sweepEvery = sweepEveryMs
  }

  get size (): number {
    return this.#sessions.size
  }

  save (session: Session): void {
    this.#sessions.set(session.clientId, session)
    if (this.#timer === undefined) {
      this.#timer = setInterval(() => this.sweep(Date.now()), this.#sweepEvery)
      this.#timer.unref()
    }
  }

  /** Removes and returns the session, unless it has expired. */
  take (clientId: string, now: number): Session | undefined {
    const session = this.#sessions.get(clientId)
    if (session === undefined) return undefined
    this.#sessions.delete(clientId)
    return session.expiresAt > now ? session : undefined
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
