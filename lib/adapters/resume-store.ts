import type { LogEntry } from '../resume/replay-log.ts'
import type { Session } from '../resume/sessions.ts'
import type { NonceStore } from '../resume/tokens.ts'

/*
 * Where the state that lets a client come back lives: used token nonces, the sessions
 * of connections that went away, and a copy of each instance's replay log that other
 * instances can read. The adapter provides it: in this process for MemoryAdapter, in
 * Redis for RedisAdapter, so that a client can resume on any instance.
 *
 * The instance's own replay log stays in its memory (offsets are handed out, and the
 * frames written, without waiting on anything); the store gets a copy of each entry
 * and may persist it later. Only a resume on another instance reads from the store.
 */
export interface ResumeStore extends NonceStore {
  /**
   * Records a used token nonce until `expiresAt`; false if any instance recorded it before.
   * A store that cannot answer rejects (best with AdapterUnavailableError): the resume then
   * fails as `unavailable`, never passes.
   */
  claim (nonce: string, expiresAt: number): boolean | Promise<boolean>
  /**
   * Keeps a session until `session.expiresAt`, unless a resume took a newer generation's
   * place (see `takeSession`). Must not throw; may persist later.
   */
  saveSession (session: Session): void
  /**
   * Removes and returns a session that has not expired, and leaves a fence for `retention` ms:
   * a later save of that client's session with a generation below the taken one's plus one is
   * refused (it comes from an instance that noticed a half-open socket late). A store that
   * cannot answer rejects: the resume fails as `unavailable`.
   */
  takeSession (clientId: string): Session | undefined | Promise<Session | undefined>
  /** Copies an entry of the log named `stream` (the instance's id). Must not throw or wait. */
  append (stream: string, entry: LogEntry): void
  /** Every entry the copy of the log named `stream` holds, oldest first (none for an unknown log). */
  read (stream: string): LogEntry[] | Promise<LogEntry[]>
  close (): void
}

/** What a store is made with. */
export interface ResumeStoreOptions {
  /** The instance's id: the name of its log, and of its presence. */
  instanceId: string
  /** Bounds of each log, as `reconnect.replayMessages` / `reconnect.replayBytes`. */
  replayMessages: number
  replayBytes: number
  /** How often expired nonces and sessions are swept, in ms. */
  sweepEvery: number
  /** How long a log is kept after its instance stopped writing to it (`reconnect.maxDisconnect`), in ms. */
  retention: number
}
