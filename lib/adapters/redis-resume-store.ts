import type { Redis } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'
import type { LogEntry, Target } from '../replay-log.ts'
import type { Session } from '../sessions.ts'
import type { ResumeStore, ResumeStoreOptions } from './resume-store.ts'
import type { RedisPresence } from './redis-presence.ts'

/*
 * The resume state in Redis, shared by every instance:
 * - `<prefix>:nonce:<nonce>`: a used token nonce, `SET NX` with the token's expiry;
 * - `<prefix>:session:<clientId>`: a session that went away, JSON, expiring with it, taken with
 *   GETDEL; a session that is not there may be that of a connection whose instance died, or
 *   that is still open on another instance: the presence has those;
 * - `<prefix>:log:<instance>`: a stream holding a copy of the instance's replay log, the
 *   entry id being `<offset>-1`, trimmed to about `replayMessages` entries and expiring
 *   `retention` ms after the instance stopped writing to it (it crashed, or left).
 * Copies are written without waiting (commands pipelined by ioredis); a copy that failed
 * leaves a hole in the offsets that a resume reports as a gap, never as a silent skip.
 */
export class RedisResumeStore implements ResumeStore {
  #redis: Redis
  #presence: RedisPresence
  #prefix: string
  #options: ResumeStoreOptions
  #log: FastifyBaseLogger
  #streams = new Set<string>()
  #timer: NodeJS.Timeout | undefined = undefined
  /** Copies and sessions that could not be written. */
  failedWrites = 0

  constructor (redis: Redis, prefix: string, options: ResumeStoreOptions, log: FastifyBaseLogger, presence: RedisPresence) {
    this.#presence = presence
    this.#redis = redis
    this.#prefix = prefix
    this.#options = options
    this.#log = log
  }

  async claim (nonce: string, expiresAt: number): Promise<boolean> {
    return await this.#redis.set(`${this.#prefix}:nonce:${nonce}`, '1', 'PXAT', expiresAt, 'NX') === 'OK'
  }

  saveSession (session: Session): void {
    this.#redis.set(`${this.#prefix}:session:${session.clientId}`, JSON.stringify(session), 'PXAT', session.expiresAt).catch(err => this.#failed(err, 'session not saved'))
  }

  async takeSession (clientId: string): Promise<Session | undefined> {
    const raw = await this.#redis.getdel(`${this.#prefix}:session:${clientId}`)
    // the key expires with the session (PXAT)
    return raw === null ? await this.#presence.takeOrphan(clientId) : JSON.parse(raw) as Session
  }

  append (stream: string, entry: LogEntry): void {
    const key = `${this.#prefix}:log:${stream}`
    if (!this.#streams.has(stream)) this.#keep(stream)
    this.#redis.xadd(key, 'MAXLEN', '~', this.#options.replayMessages, `${entry.offset}-1`, 'i', entry.id, 'a', entry.at, 't', JSON.stringify(entry.target), 'f', entry.frame)
      .catch(err => this.#failed(err, 'replay log copy not written'))
  }

  /** Keeps the stream's key alive while this instance writes to it; it expires `retention` after. */
  #keep (stream: string): void {
    this.#streams.add(stream)
    const refresh = (): void => {
      for (const name of this.#streams) this.#redis.pexpire(`${this.#prefix}:log:${name}`, this.#options.retention).catch(err => this.#failed(err, 'replay log expiry not set'))
    }
    setImmediate(refresh)
    this.#timer ??= setInterval(refresh, Math.max(1000, Math.floor(this.#options.retention / 4))).unref()
  }

  async read (stream: string): Promise<LogEntry[]> {
    const raw = await this.#redis.xrangeBuffer(`${this.#prefix}:log:${stream}`, '-', '+')
    return raw.map(([id, fields]) => {
      // written by append: i, a, t, f in this order
      const [, entryId, , at, , target, , frame] = fields
      return { offset: Number(id.toString().split('-')[0]), id: entryId.toString(), at: Number(at.toString()), target: JSON.parse(target.toString()) as Target, frame }
    })
  }

  #failed (err: unknown, what: string): void {
    this.failedWrites++
    this.#log.warn({ err }, what)
  }

  close (): void {
    clearInterval(this.#timer)
    this.#timer = undefined
  }
}
