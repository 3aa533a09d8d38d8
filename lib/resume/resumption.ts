import { randomBytes } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import type { Handshake, ManagedConnection } from '../connection.ts'
import type { ResolvedIdentity } from '../identity.ts'
import type { ResolvedOptions } from '../options.ts'
import type { RouteSettings } from '../route-settings.ts'
import { write } from '../outbound/write.ts'
import { encode, type Encoded, type OutboundMessage } from '../outbound/encode.ts'
import { envelope, reoffset, welcomeFrame, type ResumeFailure, type Welcome } from './protocol.ts'
import { ReplayLog, type LogEntry, type Target } from './replay-log.ts'
import { CLOCK_MARGIN, Merges, entriesAfter, lastSeenAt } from './log-merge.ts'
import type { Session, SessionOrigin } from './sessions.ts'
import { ReconnectTokens, type ClaimRetry, type ReconnectClaims } from './tokens.ts'
import type { ResumeStore } from '../adapters/resume-store.ts'
import type { Outgoing } from '../delivery.ts'
import { kGeneration, kHandshake, kUpstream } from '../symbols.ts'
import { delivered } from './upstream-count.ts'

/*
 * Everything that lets a client come back: reconnect tokens, the sessions of connections
 * that went away, the replay log, and the offsets of logged messages (the envelope a
 * protocol route gets is made beside the write, in delivery.ts).
 */

/**
 * Why a resume failed; the client gets a fresh session and this reason in its welcome frame.
 * `unavailable`: the session store could not be reached (Redis is down), the token was not checked.
 */

/** Why a token check failed: the token (expired, or invalid), or the store that could not answer. */
export function tokenFailure (err: unknown): ResumeFailure {
  const code = (err as { code?: unknown }).code
  if (code === 'FST_WS_TOKEN_EXPIRED') return 'expired'
  return code === 'FST_WS_INVALID_TOKEN' ? 'invalid' : 'unavailable'
}

/** A resume worked out before the upgrade (token checked, session taken). */
export interface PendingResume {
  offset: number
  /** Protocol 2: the client's own count of the frames it sent in the session. */
  sent?: number
  session?: Session
  /** The missed entries of another instance's log, read from the store. */
  remote?: LogEntry[]
  /** The ids that log holds, and the time from which this instance's log adds what it lacks. */
  seen?: ReadonlySet<string>
  since?: number
  failed?: ResumeFailure
  /** The token the resume used up. */
  used?: UsedToken
}

/** A token's nonce and expiry: what it takes to release or revoke it. */
export interface UsedToken { nonce: string, expiresAt: number }

/** What a resume restores, or why it could not. */
export interface Restored {
  identity?: ResolvedIdentity
  rooms?: string[]
  /** Entries of this instance's log, sent as they were logged. */
  entries?: LogEntry[]
  /** Entries of another instance's log (and of this one's it lacked), to log here as a merge before they are sent. */
  remote?: LogEntry[]
  /** What the clients that may share that merge have in common (see Merges). */
  merge?: string
  /** The offset the client resumed from, where its welcome puts it. */
  offset?: number
  failed?: ResumeFailure
  /** Protocol 2: the session's count of the client's frames, and whether it may be behind. */
  received?: number
  uncertain?: boolean
  /** The token the resume used up. */
  used?: UsedToken
  /** How many times the client resumed before the connection this resume restores. */
  generation?: number
  /** The other instance's log it resumed from (its offset was one of that log's). */
  from?: SessionOrigin
}

/** How long a copy of another instance's log read for a resume is reused (a reconnect storm reads it once). */
const COPY_CACHE_MS = 1000

/**
 * A session as the token in hand counts it: the token a resumed connection gave back (its
 * client never got the welcome) comes with an offset of the log that resume came from.
 */
function countedIn (session: Session | undefined, nonce: string): Session | undefined {
  if (session?.before === undefined) return session
  const { before, ...rest } = session
  return before.nonce === nonce ? { ...rest, stream: before.stream, connectedAt: before.connectedAt } : rest
}

export class Resumption {
  #log: FastifyBaseLogger
  #options: ResolvedOptions['reconnect']
  #tokens: ReconnectTokens
  #randomSecret: boolean
  #replay: ReplayLog | undefined = undefined
  /** Messages sent without a log of its own (no route here replays): their ids. */
  #unlogged = 0
  /** Nonces, sessions and copies of the log, wherever the adapter keeps them. */
  readonly store: ResumeStore
  /** This instance's log, as sessions name it. */
  readonly stream: string
  #copies = new Map<string, { timer: NodeJS.Timeout, entries: Promise<LogEntry[]> }>()
  /** The merges of other instances' logs made here, shared by the clients that missed the same. */
  #merges = new Merges()

  constructor (options: ResolvedOptions['reconnect'], log: FastifyBaseLogger, store: ResumeStore, stream: string) {
    this.#log = log
    this.#options = options
    this.store = store
    this.stream = stream
    const { secret, tokenTtl } = options
    this.#randomSecret = secret === undefined
    this.#tokens = new ReconnectTokens({
      secrets: secret === undefined ? [randomBytes(32).toString('base64url')] : typeof secret === 'string' ? [secret] : secret,
      ttl: tokenTtl,
      nonces: store
    })
  }

  /** Makes the replay log; called for each route that replays. */
  useReplay (): void {
    this.#replay ??= new ReplayLog(this.#options.replayMessages, this.#options.replayBytes)
  }

  generateToken (clientId: string, userId: string | undefined): string {
    this.#log.debug({ clientId }, 'reconnect token issued')
    return this.#issue(clientId, userId).token
  }

  /** Every token goes out here (welcomes and `generateReconnectToken`): the first says when the secret is a random one. */
  #issue (clientId: string, userId: string | undefined): { token: string, nonce: string, expiresAt: number } {
    if (this.#randomSecret) {
      this.#randomSecret = false
      this.#log.warn('no reconnect.secret configured: reconnect tokens are signed with a random per-process secret, so they do not survive a restart or work on another instance')
    }
    return this.#tokens.issue(clientId, userId)
  }

  async validateToken (token: string, retry?: ClaimRetry): Promise<ReconnectClaims> {
    try {
      const claims = await this.#tokens.validate(token, retry)
      this.#log.debug({ clientId: claims.clientId }, 'reconnect token accepted')
      return claims
    } catch (err) {
      this.#log.info({ code: (err as { code?: string }).code }, 'reconnect token rejected')
      throw err
    }
  }

  /** Encodes once; logs it for replay (one offset for all recipients) unless volatile or no route replays. */
  prepare (message: OutboundMessage, target: Target, volatile = false): Outgoing {
    return this.prepareEncoded(encode(message), target, volatile)
  }

  /** As `prepare`, for a message encoded already (one from another instance, with its id). */
  prepareEncoded (plain: Encoded, target: Target, volatile = false, id?: string): Outgoing {
    if (volatile) return { plain, framed: undefined, volatile }
    // not logged here, but the other instances log it under this id, the same on all of them
    if (this.#replay === undefined) return { plain, framed: undefined, id: id ?? `${this.stream}:u${++this.#unlogged}` }
    const entry = this.#append(target, offset => envelope(plain, offset), id)
    return { plain, framed: { data: entry.frame, binary: false }, id: entry.id }
  }

  #append (target: Target, frame: (offset: number) => Buffer, id: string | undefined): LogEntry {
    const replay = this.#replay!
    const offset = replay.next()
    const entry = { offset, id: id ?? `${this.stream}:${offset}`, at: Date.now(), target, frame: frame(offset) }
    replay.append(entry)
    this.store.append(this.stream, entry)
    return entry
  }

  /**
   * The part of a resume that may wait, before the upgrade: the session (that of `live`, a
   * half-open connection still registered here, or a saved one taken from the store)
   * and, when the client was on another instance, its missed entries of that instance's log.
   */
  async lookup (claims: ReconnectClaims, offset: number, route: RouteSettings, live: ManagedConnection | undefined): Promise<PendingResume> {
    const session = live !== undefined
      ? { clientId: live.id, userId: live.userId, metadata: live.metadata, rooms: [...live.rooms], stream: this.stream, connectedAt: live.connectedAt.getTime(), expiresAt: Infinity, generation: live[kGeneration] }
      : countedIn(await this.store.takeSession(claims.clientId), claims.nonce)
    if (session === undefined) return { offset, failed: 'unknown_session' }
    if (session.userId !== claims.userId) return { offset, failed: 'invalid' }
    const used = { nonce: claims.nonce, expiresAt: claims.expiresAt }
    if (!route.reconnect!.replay || session.stream === this.stream) return { offset, session, used }
    let copy = await this.#copy(session.stream)
    // a copy read for an earlier resume may end before this client's offset: read it again
    if (copy.length > 0 && offset > copy[copy.length - 1].offset) {
      this.#forget(session.stream)
      copy = await this.#copy(session.stream)
    }
    const after = entriesAfter(copy, offset)
    if (after === undefined) return { offset, failed: 'gap' }
    const since = lastSeenAt(copy, offset, session.connectedAt) - CLOCK_MARGIN
    // the copy lost entries the client may have had: this log could add them again
    if (copy.length > 0 && copy[0].offset > 1 && copy[0].at > since) return { offset, failed: 'gap' }
    const rooms = new Set(session.rooms)
    return { offset, session, used, remote: after.filter(e => addressedTo(e.target, session.clientId, session.userId, rooms)), seen: new Set(copy.map(e => e.id)), since }
  }

  async #copy (stream: string): Promise<LogEntry[]> {
    let cached = this.#copies.get(stream)
    if (cached === undefined) {
      // a read that failed is kept as well: for a second, resumes from that log fail alike
      cached = { timer: setTimeout(this.#forget, COPY_CACHE_MS, stream).unref(), entries: Promise.resolve().then(() => this.store.read(stream)) }
      this.#copies.set(stream, cached)
    }
    return await cached.entries
  }

  #forget = (stream: string): void => {
    clearTimeout(this.#copies.get(stream)?.timer)
    this.#copies.delete(stream)
  }

  /**
   * The part of a resume done at the upgrade, with no wait: the identity and rooms, and
   * the entries of this instance's log after the client's offset addressed to it. Any
   * failure gives a fresh session and the reason, never a partial restore.
   */
  restore (fresh: ResolvedIdentity, route: RouteSettings, resume: PendingResume): Restored {
    const session = resume.session
    if (session === undefined) return { failed: resume.failed }
    if (fresh.userId !== undefined && fresh.userId !== session.userId) return { failed: 'invalid' }
    const restored: Restored = { identity: { clientId: session.clientId, userId: session.userId, metadata: session.metadata }, rooms: session.rooms, received: session.received, uncertain: session.uncertain, used: resume.used, generation: session.generation ?? 0 }
    if (!route.reconnect!.replay) return restored
    if (resume.remote !== undefined) {
      restored.from = { stream: session.stream, connectedAt: session.connectedAt }
      const replay = this.#replay!
      if (replay.evictedUntil >= resume.since!) return { failed: 'gap' }
      const rooms = new Set(session.rooms)
      const seen = resume.seen!
      // this log's own entries only: those of merges are copies, already here or in the old log
      const newer = replay.since(resume.since!).filter(e => e.target.merge === undefined && !seen.has(e.id) && addressedTo(e.target, session.clientId, session.userId, rooms))
      const missed = newer.length === 0 ? resume.remote : [...resume.remote, ...newer]
      if (missed.length === 0) {
        restored.remote = missed
        return restored
      }
      const key = [session.stream, resume.offset, resume.since, session.userId ?? '', ...[...rooms].sort()].join('\n')
      // a merge made for a client that left at the same point: what it replays now is exactly what this one missed
      const start = this.#merges.get(key)
      const shared = start === undefined ? undefined : replay.after(start)?.filter(e => addressedTo(e.target, session.clientId, session.userId, rooms))
      if (shared !== undefined && sameIds(shared, missed)) {
        restored.entries = shared
        restored.offset = start
        return restored
      }
      restored.remote = missed
      restored.merge = key
      return restored
    }
    const after = this.#replay!.after(resume.offset)
    if (after === undefined) return { failed: 'gap' }
    const rooms = new Set(session.rooms)
    restored.entries = after.filter(e => addressedTo(e.target, session.clientId, session.userId, rooms))
    restored.offset = resume.offset
    return restored
  }

  /**
   * The welcome frame (with a fresh token) first, then the replayed messages, in order.
   * Entries of another instance's log are logged here again first, as a merge that other
   * clients who missed the same can share (log-merge.ts), so that they carry this log's
   * offsets and a drop during the replay loses nothing.
   */
  welcome (conn: ManagedConnection, restored: Restored | undefined): void {
    if (restored?.remote !== undefined && restored.remote.length > 0) this.#merge(restored)
    const issued = this.#issue(conn.id, conn.userId)
    const welcome: Welcome = {
      clientId: conn.id,
      token: issued.token,
      offset: restored?.offset ?? this.#replay?.offset ?? 0,
      resumed: restored?.rooms !== undefined
    }
    const replayed = restored?.entries ?? restored?.remote
    if (replayed !== undefined) welcome.replayed = replayed.length
    if (restored?.failed !== undefined) welcome.resumeFailed = restored.failed
    const upstream = conn[kUpstream]
    if (upstream !== undefined) welcome.received = upstream.received
    write(conn, { data: welcomeFrame(welcome), binary: false }, true)
    // until the client is heard from, this welcome may never have reached it (see saveSession)
    if (welcome.resumed && restored?.used !== undefined && this.store.release !== undefined) conn[kHandshake] = { used: restored.used, issued, from: restored.from }
    if (restored?.entries !== undefined) for (const entry of restored.entries) write(conn, { data: entry.frame, binary: false })
    if (restored !== undefined) conn.log.info({ resumed: welcome.resumed, replayed: welcome.replayed, resumeFailed: welcome.resumeFailed }, 'websocket resume')
  }

  /**
   * Logs a resume's missed entries of another log as a merge: its marker (the welcome's
   * offset), then each entry with this log's offset and its own target, naming the merge.
   */
  #merge (restored: Restored): void {
    const replay = this.#replay!
    const start = replay.offset + 1
    this.#append({ merge: start }, () => MARKER, undefined)
    restored.entries = restored.remote!.map(entry => this.#append({ ...entry.target, merge: start }, offset => reoffset(entry.frame, offset), entry.id))
    restored.remote = undefined
    restored.offset = start
    this.#merges.set(restored.merge!, start, replay.first)
  }

  /** Keeps a resumable connection's session after it went away, for `maxDisconnect` ms. */
  saveSession (conn: ManagedConnection, rooms: string[]): void {
    const session: Session = { clientId: conn.id, userId: conn.userId, metadata: conn.metadata, rooms, stream: this.stream, connectedAt: conn.connectedAt.getTime(), expiresAt: Date.now() + conn.route.reconnect!.maxDisconnect }
    if (conn[kGeneration] > 0) session.generation = conn[kGeneration]
    const upstream = conn[kUpstream]
    if (upstream !== undefined) session.received = delivered(upstream)
    const handshake = conn[kHandshake]
    // the client that never got its welcome still counts in the log it resumed from
    if (handshake?.from !== undefined) session.before = { nonce: handshake.used.nonce, ...handshake.from }
    this.store.saveSession(session)
    if (handshake !== undefined) this.#reopen(handshake)
  }

  /**
   * A resumed connection ended before the client was heard from: its welcome, with the next
   * token, may never have arrived, and then the client can only come back with the token it
   * used. So that token is given back, paired with the one the welcome carried: either can
   * resume, once, and using one spends the other.
   */
  #reopen (handshake: Handshake): void {
    this.store.release!(handshake.used, handshake.issued)
  }

  /**
   * A resume looked up before the upgrade whose upgrade never happened (the client went
   * meanwhile, as it does when its open timeout ends in a reconnect storm): what the lookup
   * took goes back, so that the client's next try with the same token resumes. The token's
   * nonce is claimed no more, and a session taken from the store is saved again with the
   * generation of its fence (a half-open connection still registered here was not taken).
   */
  giveBack (used: UsedToken, session: Session): void {
    // the session first: a try elsewhere waiting for the claim (ClaimRetry) takes it next
    if (session.expiresAt !== Infinity) {
      const { liveOn: _, ...kept } = session
      this.store.saveSession({ ...kept, generation: (session.generation ?? 0) + 1 })
    }
    this.store.unclaim?.(used.nonce)
  }

  close (): void {
    for (const stream of this.#copies.keys()) this.#forget(stream)
    this.#merges.clear()
    this.store.close()
  }
}

/** A merge's marker: logged, never sent. */
const MARKER = Buffer.alloc(0)

/** Whether two lists of entries hold the same messages (ids are unique within each). */
function sameIds (a: readonly LogEntry[], b: readonly LogEntry[]): boolean {
  if (a.length !== b.length) return false
  const ids = new Set(b.map(e => e.id))
  return a.every(e => ids.has(e.id))
}

function addressedTo (target: Target, clientId: string, userId: string | undefined, rooms: ReadonlySet<string>): boolean {
  if (target.exclude?.includes(clientId) === true) return false
  if (target.clientId !== undefined) return target.clientId === clientId
  if (target.userId !== undefined) return target.userId === userId
  if (target.rooms !== undefined) return target.rooms.some(room => rooms.has(room))
  return true
}
