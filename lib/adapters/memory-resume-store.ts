import { ReplayLog, type LogEntry } from '../resume/replay-log.ts'
import { SessionStore, type Session } from '../resume/sessions.ts'
import { MemoryNonceStore } from '../resume/tokens.ts'
import type { ResumeStore, ResumeStoreOptions } from './resume-store.ts'

/*
 * The resume state in this process. Alone it serves one instance, whose own log never
 * needs copying. Shared by the instances of a MemoryBus it keeps a copy of each one's
 * log, so that a client can resume on another of them, as with Redis.
 */
export class MemoryResumeStore implements ResumeStore {
  readonly nonces: MemoryNonceStore
  readonly sessions: SessionStore
  /** Copies of the instances' logs, by stream; only when shared. */
  readonly logs: Map<string, ReplayLog> | undefined
  /** Shared by the instances of a MemoryBus: a claim may be another instance's upgrade in flight. */
  readonly shared: boolean
  #options: ResumeStoreOptions
  #users = 0

  constructor (options: ResumeStoreOptions, shared: boolean) {
    this.#options = options
    this.nonces = new MemoryNonceStore(options.sweepEvery)
    this.sessions = new SessionStore(options.sweepEvery, options.retention)
    this.logs = shared ? new Map() : undefined
    this.shared = shared
  }

  /** Counts a user of a shared store: it is closed when the last one closes it. */
  acquire (): this {
    this.#users++
    return this
  }

  claim (nonce: string, expiresAt: number): boolean {
    return this.nonces.claim(nonce, expiresAt)
  }

  release (used: { nonce: string, expiresAt: number }, partner: { nonce: string, expiresAt: number }): void {
    this.nonces.release(used, partner)
  }

  unclaim (nonce: string): void {
    this.nonces.unclaim(nonce)
  }

  saveSession (session: Session): void {
    this.sessions.save(session)
  }

  takeSession (clientId: string): Session | undefined {
    return this.sessions.take(clientId, Date.now())
  }

  append (stream: string, entry: LogEntry): void {
    const logs = this.logs
    if (logs === undefined) return
    let log = logs.get(stream)
    if (log === undefined) {
      log = new ReplayLog(this.#options.replayMessages, this.#options.replayBytes)
      logs.set(stream, log)
    }
    log.copy(entry)
  }

  read (stream: string): LogEntry[] {
    return this.logs?.get(stream)?.entries() ?? []
  }

  close (): void {
    if (--this.#users > 0) return
    this.nonces.close()
    this.sessions.close()
    this.logs?.clear()
  }
}
