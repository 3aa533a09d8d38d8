import type { RedisClient, RedisKeys } from './redis-keys.ts'
import type { FastifyBaseLogger } from 'fastify'
import type { LogEntry, Target } from '../resume/replay-log.ts'
import type { Session } from '../resume/sessions.ts'
import type { ResumeStore, ResumeStoreOptions } from './resume-store.ts'
import type { RedisPresence } from './redis-presence.ts'
import { randomBytes } from 'node:crypto'
import { AdapterUnavailableError } from '../errors.ts'

/*
 * The resume state in Redis, shared by every instance (names in redis-keys.ts; each script
 * touches the keys of one hash tag, given in KEYS):
 * - `<prefix>:nonce:{<nonce>}`: a used token nonce, expiring with the token: `<attempt> <answer>`,
 *   the attempt id of the call that claimed it and what that call answered (`1`, or the pair
 *   it took), so that the same call run again gets the same answer (below);
 * - `<prefix>:pair:{<nonce>}`: a nonce given back (a resume never heard from) and its partner,
 *   `<partner>|<its expiry>`, both ways, each expiring with the token it names: claiming
 *   either claims the other (in two steps, one per nonce's slot: see `claim`);
 * - `<prefix>:session:{<clientId>}`: a session that went away, JSON, expiring with it; a resume
 *   takes it and leaves a fence in its place, `{"fence":true,"generation":N,"taker":<attempt>,
 *   "taken":<the session's JSON>}` expiring `retention` ms later, so that a save of an older
 *   generation (an instance that noticed a half-open socket late) is refused; a session that
 *   is not there may be that of a connection whose instance died, or that is still open on
 *   another instance: the presence has those (a session taken from there gets its fence too,
 *   `{"fence":true,"generation":N}`);
 * - `<prefix>:log:{<instance>}`: a stream holding a copy of the instance's replay log, the
 *   entry id being `<offset>-1`, trimmed to about `replayMessages` entries and expiring
 *   `retention` ms after the instance last wrote to it or, while it lives, refreshed it
 *   (every write sets the expiry, so a short-lived or killed instance leaves none for ever).
 * Copies are written without waiting, the entries of one turn of the event loop with one
 * command (a script that adds each: a command per entry cost 24 µs each); a copy that failed
 * leaves a hole in the offsets that a resume reports as a gap, never as a silent skip.
 *
 * Every script gives the same answer when the same call runs twice: ioredis sends the
 * commands in flight when its connection dropped again once it is back
 * (`autoResendUnfulfilledCommands`), so a script whose reply was lost runs a second time. A
 * claim or take carries an attempt id (unique per call: a random prefix per store and a
 * counter) that the script writes with what it changed; a run that finds its own id answers
 * what the first run did, and any other id is another call (refused, as before). An append
 * skips the entries the stream already has.
 */
/**
 * Claims a nonce (KEYS[1]; ARGV: until when, the attempt id) and takes its pair (KEYS[2],
 * written by `release`): 0 when another call claimed it, else `1` when it has no partner or
 * `<partner>|<its expiry>`.
 */
const CLAIM = `local seen = redis.call('GET', KEYS[1])
if seen then
  local mine = ARGV[2] .. ' '
  if string.sub(seen, 1, #mine) ~= mine then return 0 end
  return string.sub(seen, #mine + 1)
end
local answer = redis.call('GET', KEYS[2])
if answer then redis.call('DEL', KEYS[2]) else answer = '1' end
redis.call('SET', KEYS[1], ARGV[2] .. ' ' .. answer, 'PXAT', ARGV[1])
return answer`

/** Claims a partner's nonce (KEYS[1]) and drops its pair (KEYS[2]): 1 unless another call claimed it. */
const CLAIM_PARTNER = `redis.call('DEL', KEYS[2])
local mine = ARGV[2] .. ' 1'
local seen = redis.call('GET', KEYS[1])
if seen then return seen == mine and 1 or 0 end
redis.call('SET', KEYS[1], mine, 'PXAT', ARGV[1])
return 1`

/**
 * Takes a session, leaving its fence (ARGV: until when, ms since the epoch; the attempt id); a
 * fence is not taken, unless this very call left it (the session is answered again).
 */
const TAKE = `local raw = redis.call('GET', KEYS[1])
if not raw then return false end
local session = cjson.decode(raw)
if session.fence then
  if session.taker == ARGV[2] then return session.taken end
  return false
end
redis.call('SET', KEYS[1], cjson.encode({ fence = true, generation = (session.generation or 0) + 1, taker = ARGV[2], taken = raw }), 'PXAT', ARGV[1])
return raw`

/** Writes a session or a fence (ARGV: the JSON, its generation, until when) unless a newer generation is there. */
const PUT = `local raw = redis.call('GET', KEYS[1])
if raw and (cjson.decode(raw).generation or 0) > tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[3])
return 1`

/**
 * Appends a batch of entries to a log stream (one command instead of one per entry) and sets
 * the stream's expiry: the first write makes the key, so that is where it must get one. An
 * entry whose id is not above the stream's last is there already (this batch run again) and
 * is skipped; any other error is the script's.
 */
const APPEND = `for i = 3, #ARGV, 5 do
  local added = redis.pcall('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], ARGV[i], 'i', ARGV[i + 1], 'a', ARGV[i + 2], 't', ARGV[i + 3], 'f', ARGV[i + 4])
  if type(added) == 'table' and added.err and not string.find(added.err, 'equal or smaller', 1, true) then return added end
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`

/** Entries written with one command at most. */
const BATCH = 500

export class RedisResumeStore implements ResumeStore {
  #redis: RedisClient
  #presence: RedisPresence
  #keys: RedisKeys
  #options: ResumeStoreOptions
  #log: FastifyBaseLogger
  #streams = new Set<string>()
  /** Entries waiting for the end of this turn of the event loop, by key: id, i, a, t, f each. */
  #batches = new Map<string, Array<string | number | Buffer>>()
  #timer: NodeJS.Timeout | undefined = undefined
  /** Every instance claims here: a claim may be another one's upgrade in flight. */
  readonly shared = true
  /** Copies and sessions that could not be written. */
  failedWrites = 0
  /** The attempt ids of this store's calls: `<its random prefix>.<n>` (see the scripts). */
  #attemptPrefix = randomBytes(9).toString('base64url')
  #attempts = 0

  constructor (redis: RedisClient, keys: RedisKeys, options: ResumeStoreOptions, log: FastifyBaseLogger, presence: RedisPresence) {
    this.#presence = presence
    this.#redis = redis
    this.#keys = keys
    this.#options = options
    this.#log = log
  }

  /**
   * Claims a nonce, and a released one's partner with it: when the partner was claimed
   * first, this one is spent too. Two steps, as the two nonces are in two slots: of two
   * claims racing for the two tokens of a pair, both may be refused (never both granted).
   */
  async claim (nonce: string, expiresAt: number): Promise<boolean> {
    return await this.#claim(nonce, expiresAt).catch(unavailable('the token nonce claim'))
  }

  async #claim (nonce: string, expiresAt: number): Promise<boolean> {
    const answer = await this.#redis.eval(CLAIM, 2, this.#keys.nonce(nonce), this.#keys.pair(nonce), expiresAt, this.#attempt()) as 0 | string
    if (answer === 0) return false
    if (answer === '1') return true
    const sep = answer.indexOf('|')
    const partner = answer.slice(0, sep)
    return await this.#redis.eval(CLAIM_PARTNER, 2, this.#keys.nonce(partner), this.#keys.pair(partner), answer.slice(sep + 1), this.#attempt()) === 1
  }

  /** A new attempt id: what a script run again finds to know it is the same call. */
  #attempt (): string {
    return `${this.#attemptPrefix}.${(++this.#attempts).toString(36)}`
  }

  /**
   * Gives `used` back, paired with `partner`. The partner's pair is written first: by the
   * time `used` can be claimed again, claiming either claims the other.
   */
  release (used: { nonce: string, expiresAt: number }, partner: { nonce: string, expiresAt: number }): void {
    this.#redis.set(this.#keys.pair(partner.nonce), `${used.nonce}|${used.expiresAt}`, 'PXAT', used.expiresAt)
      .then(async () => await this.#redis.multi()
        .set(this.#keys.pair(used.nonce), `${partner.nonce}|${partner.expiresAt}`, 'PXAT', partner.expiresAt)
        .del(this.#keys.nonce(used.nonce))
        .exec())
      .catch(err => this.#failed(err, 'token nonce not released'))
  }

  unclaim (nonce: string): void {
    this.#redis.del(this.#keys.nonce(nonce)).catch(err => this.#failed(err, 'token nonce not given back'))
  }

  saveSession (session: Session): void {
    this.#put(session.clientId, JSON.stringify(session), session.generation ?? 0, session.expiresAt).then(saved => {
      if (!saved) this.#log.debug({ clientId: session.clientId }, 'session not saved: the client resumed elsewhere since')
    }, err => this.#failed(err, 'session not saved'))
  }

  async #put (clientId: string, json: string, generation: number, until: number): Promise<boolean> {
    return await this.#redis.eval(PUT, 1, this.#keys.session(clientId), json, generation, until) === 1
  }

  async takeSession (clientId: string): Promise<Session | undefined> {
    return await this.#takeSession(clientId).catch(unavailable('the session lookup'))
  }

  async #takeSession (clientId: string): Promise<Session | undefined> {
    const until = Date.now() + this.#options.retention
    const raw = await this.#redis.eval(TAKE, 1, this.#keys.session(clientId), until, this.#attempt()) as string | null
    if (raw !== null) return JSON.parse(raw) as Session
    const orphan = await this.#presence.takeOrphan(clientId)
    if (orphan === undefined) return undefined
    // a half-open socket there may yet end and save this session: the fence refuses it
    const generation = (orphan.generation ?? 0) + 1
    await this.#put(clientId, JSON.stringify({ fence: true, generation }), generation, until)
    return orphan
  }

  append (stream: string, entry: LogEntry): void {
    const key = this.#keys.log(stream)
    let batch = this.#batches.get(key)
    if (batch === undefined) {
      if (!this.#streams.has(stream)) this.#keep(stream)
      batch = []
      this.#batches.set(key, batch)
      if (this.#batches.size === 1) setImmediate(this.#flush)
    }
    batch.push(`${entry.offset}-1`, entry.id, entry.at, JSON.stringify(entry.target), entry.frame)
    if (batch.length >= BATCH * 5) this.#write(key, batch.splice(0))
  }

  /** Writes the entries of one turn of the event loop with one command per log. */
  #flush = (): void => {
    for (const [key, batch] of this.#batches) if (batch.length > 0) this.#write(key, batch)
    this.#batches.clear()
  }

  #write (key: string, batch: Array<string | number | Buffer>): void {
    this.#redis.eval(APPEND, 1, key, this.#options.replayMessages, this.#options.retention, ...batch).catch(err => this.#failed(err, 'replay log copy not written'))
  }

  /**
   * Keeps the stream's key alive while this instance lives, written to or not (its clients
   * may resume elsewhere from it); each write sets the expiry too, the first one included.
   */
  #keep (stream: string): void {
    this.#streams.add(stream)
    // a write of no entries only sets the expiry
    const refresh = (): void => {
      for (const name of this.#streams) this.#write(this.#keys.log(name), [])
    }
    this.#timer ??= setInterval(refresh, Math.max(10, Math.floor(this.#options.retention / 4))).unref()
  }

  async read (stream: string): Promise<LogEntry[]> {
    const raw = await this.#redis.xrangeBuffer(this.#keys.log(stream), '-', '+').catch(unavailable('the log copy read'))
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
    this.#flush()
    clearInterval(this.#timer)
    this.#timer = undefined
  }
}

/** A read that Redis could not answer, named: a resume then fails as `unavailable`. */
function unavailable (what: string): (err: unknown) => never {
  return (err) => { throw new AdapterUnavailableError('redis', what, String(err), { cause: err }) }
}
