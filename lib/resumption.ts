import { randomBytes } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import type { ManagedConnection } from './connection.ts'
import type { ResolvedIdentity } from './identity.ts'
import type { ResolvedOptions } from './options.ts'
import type { RouteSettings } from './route-options.ts'
import { encode, write, type Encoded, type OutboundMessage } from './outbound.ts'
import { envelope, welcomeFrame, type Welcome } from './protocol.ts'
import { ReplayLog, type LogEntry, type Target } from './replay-log.ts'
import { SessionStore } from './sessions.ts'
import { MemoryNonceStore, ReconnectTokens, type NonceStore, type ReconnectClaims } from './tokens.ts'

/*
 * Everything that lets a client come back: reconnect tokens, the sessions of connections
 * that went away, the replay log, and the protocol framing of messages (offsets).
 */

/** Why a resume failed; the client gets a fresh session and this reason in its welcome frame. */
export type ResumeFailure = 'invalid' | 'expired' | 'unknown_session' | 'gap'

/** @internal A resume asked for at the upgrade. */
export interface PendingResume {
  claims?: ReconnectClaims
  offset: number
  failed?: ResumeFailure
}

/** What a resume restores, or why it could not. */
export interface Restored {
  identity?: ResolvedIdentity
  rooms?: string[]
  entries?: LogEntry[]
  failed?: ResumeFailure
}

/** A message encoded once, with its protocol frame (made on first need). */
export interface Outgoing {
  plain: Encoded
  framed: Encoded | undefined
}

export class Resumption {
  #log: FastifyBaseLogger
  #options: ResolvedOptions['reconnect']
  #nonces: NonceStore
  #tokens: ReconnectTokens
  #randomSecret: boolean
  #replay: ReplayLog | undefined = undefined
  #sessions = new SessionStore(10_000)

  constructor (options: ResolvedOptions['reconnect'], log: FastifyBaseLogger) {
    this.#log = log
    this.#options = options
    const { secret, tokenTtl } = options
    this.#randomSecret = secret === undefined
    this.#nonces = new MemoryNonceStore(Math.min(tokenTtl, 60_000))
    this.#tokens = new ReconnectTokens({
      secrets: secret === undefined ? [randomBytes(32).toString('base64url')] : typeof secret === 'string' ? [secret] : secret,
      ttl: tokenTtl,
      nonces: this.#nonces
    })
  }

  /** Makes the replay log; called for each route that replays. */
  useReplay (): void {
    this.#replay ??= new ReplayLog(this.#options.replayMessages, this.#options.replayBytes)
  }

  generateToken (clientId: string, userId: string | undefined): string {
    if (this.#randomSecret) {
      this.#randomSecret = false
      this.#log.warn('no reconnect.secret configured: reconnect tokens are signed with a random per-process secret, so they do not survive a restart or work on another instance')
    }
    this.#log.debug({ clientId }, 'reconnect token issued')
    return this.#tokens.generate(clientId, userId)
  }

  async validateToken (token: string): Promise<ReconnectClaims> {
    try {
      const claims = await this.#tokens.validate(token)
      this.#log.debug({ clientId: claims.clientId }, 'reconnect token accepted')
      return claims
    } catch (err) {
      this.#log.info({ code: (err as { code?: string }).code }, 'reconnect token rejected')
      throw err
    }
  }

  /** Encodes once; logs it for replay (one offset for all recipients) unless volatile or no route replays. */
  prepare (message: OutboundMessage, target: Target, volatile = false): Outgoing {
    const plain = encode(message)
    const replay = this.#replay
    if (replay === undefined || volatile) return { plain, framed: undefined }
    const offset = replay.next()
    const framed = { data: envelope(plain, offset), binary: false }
    replay.append({ offset, target, frame: framed.data })
    return { plain, framed }
  }

  /** What a connection gets: the envelope on protocol routes, the plain message elsewhere. */
  frameFor (conn: ManagedConnection, out: Outgoing): Encoded {
    if (conn.route.reconnect === undefined) return out.plain
    out.framed ??= { data: envelope(out.plain, undefined), binary: false }
    return out.framed
  }

  /**
   * Works out a resume: the session (`live`, a half-open connection still registered, or a
   * saved one), then the log entries after the client's offset addressed to it. Any
   * failure gives a fresh session and the reason, never a partial restore.
   */
  restore (fresh: ResolvedIdentity, route: RouteSettings, resume: PendingResume, live: ManagedConnection | undefined): Restored {
    if (resume.failed !== undefined) return { failed: resume.failed }
    const claims = resume.claims!
    const session = live !== undefined
      ? { userId: live.userId, metadata: live.metadata, rooms: [...live.rooms] }
      : this.#sessions.take(claims.clientId, Date.now())
    if (session === undefined) return { failed: 'unknown_session' }
    if (session.userId !== claims.userId || (fresh.userId !== undefined && fresh.userId !== session.userId)) return { failed: 'invalid' }
    let entries: LogEntry[] | undefined
    if (route.reconnect!.replay) {
      const replay = this.#replay!
      const after = resume.offset > replay.offset ? undefined : replay.after(resume.offset)
      if (after === undefined) return { failed: 'gap' }
      const rooms = new Set(session.rooms)
      entries = after.filter(e => addressedTo(e.target, claims.clientId, session.userId, rooms))
    }
    return { identity: { clientId: claims.clientId, userId: session.userId, metadata: session.metadata }, rooms: session.rooms, entries }
  }

  /** The welcome frame (with a fresh token) first, then the replayed messages, in order. */
  welcome (conn: ManagedConnection, restored: Restored | undefined): void {
    const welcome: Welcome = {
      clientId: conn.id,
      token: this.#tokens.generate(conn.id, conn.userId),
      offset: this.#replay?.offset ?? 0,
      resumed: restored?.rooms !== undefined
    }
    if (restored?.entries !== undefined) welcome.replayed = restored.entries.length
    if (restored?.failed !== undefined) welcome.resumeFailed = restored.failed
    write(conn, { data: welcomeFrame(welcome), binary: false }, true)
    if (restored?.entries !== undefined) for (const entry of restored.entries) write(conn, { data: entry.frame, binary: false })
    if (restored !== undefined) conn.log.info({ resumed: welcome.resumed, replayed: welcome.replayed, resumeFailed: welcome.resumeFailed }, 'websocket resume')
  }

  /** Keeps a resumable connection's session after it went away, for `maxDisconnect` ms. */
  saveSession (conn: ManagedConnection, rooms: string[]): void {
    this.#sessions.save({ clientId: conn.id, userId: conn.userId, metadata: conn.metadata, rooms, expiresAt: Date.now() + conn.route.reconnect!.maxDisconnect })
  }

  close (): void {
    this.#nonces.close()
    this.#sessions.close()
  }
}

function addressedTo (target: Target, clientId: string, userId: string | undefined, rooms: ReadonlySet<string>): boolean {
  if (target.exclude?.includes(clientId) === true) return false
  if (target.clientId !== undefined) return target.clientId === clientId
  if (target.userId !== undefined) return target.userId === userId
  if (target.rooms !== undefined) return target.rooms.some(room => rooms.has(room))
  return true
}
