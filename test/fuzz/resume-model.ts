import { ROUTES, type Route } from './model.ts'

/*
 * What the upgrade parameters of a resume route mean (PROTOCOL.md "Protocol 2" and "The
 * resume protocol"), worked out independently of lib/: which protocol a connection
 * speaks, the ack threshold its window asks for, and what a resume gets, given the
 * session's count and the tokens the client holds.
 */

/** An offset no log of the run reaches: a resume from it is newer than the log. */
export const AHEAD = 10 ** 12
/** How far a resume's `sent` may be beyond the server's count. */
export const MAX_RESEND = 1_048_576
/** Acks go out at once when this many frames (or half the window, if less) wait. */
export const ACK_EVERY = 64

/** Upgrade parameters: query pairs (values as the server decodes them) and header lines. */
export interface Params {
  query: Array<[string, string]>
  headers: Record<string, string>
  /** Write the values percent-encoded, every byte. */
  encode: boolean
}

/** A query parameter as the server's parser gives it: absent, one value, or several. */
function param (params: Params, key: string): string | string[] | undefined {
  const values = params.query.filter(([k]) => k === key).map(([, v]) => v)
  return values.length === 0 ? undefined : values.length === 1 ? values[0] : values
}

/** The query's value, or else the header's (HTTP drops the spaces and tabs around a header's value). */
function read (params: Params, key: string, header: string): string | string[] | undefined {
  return param(params, key) ?? params.headers[header]?.replace(/^[ \t]+|[ \t]+$/g, '')
}

/** A count or an offset: a whole number of at most 15 digits; -1 for anything else. */
function count (raw: unknown): number {
  return typeof raw === 'string' && /^\d{1,15}$/.test(raw) ? Number(raw) : -1
}

export interface Protocol {
  numbered: boolean
  /** Unacknowledged frames that make an ack go out at once. */
  threshold: number
}

export function protocolOf (params: Params): Protocol {
  const numbered = param(params, 'v') === '2' || params.headers['x-ws-version']?.trim() === '2'
  const window = count(read(params, 'w', 'x-ws-window'))
  return { numbered, threshold: window < 1 ? ACK_EVERY : Math.max(1, Math.min(ACK_EVERY, Math.floor(window / 2))) }
}

/**
 * The tokens a session's client has held: each good once; one a resumed connection used is
 * given back, paired with the one its welcome carried, when that connection ends before the
 * client was heard from, and then using either spends both.
 */
export class Tokens {
  #tokens = new Map<string, { used: boolean, partner?: string }>()

  issued (token: string): void {
    this.#tokens.set(token, { used: false })
  }

  /** Uses the token up; false when it is unknown or used (or its partner was). */
  claim (token: unknown): boolean {
    const state = typeof token === 'string' ? this.#tokens.get(token) : undefined
    if (state === undefined || state.used) return false
    state.used = true
    if (state.partner === undefined) return true
    const partner = this.#tokens.get(state.partner)!
    state.partner = partner.partner = undefined
    if (partner.used) return false
    partner.used = true
    return true
  }

  release (used: string, partner: string): void {
    const a = this.#tokens.get(used)!
    const b = this.#tokens.get(partner)!
    a.used = false
    a.partner = partner
    b.partner = used
  }
}

export interface SessionModel {
  /** Saved, and not taken by a resume since. */
  saved: boolean
  /** Protocol 2: the frames of the session the server had when it was saved. */
  received: number
}

export interface ResumeOutcome {
  /** A resume was asked for at all. */
  asked: boolean
  resumed: boolean
  failed?: 'invalid' | 'unknown_session' | 'gap'
  /** The resume's offset, when it resumed. */
  offset?: number
  /** The token it used up (tokens it only looked at stay good). */
  used?: string
}

/** What a connection with `params` gets on `route`; it takes the token and the session as the server does. */
export function resumeOutcome (route: Route, params: Params, session: SessionModel, tokens: Tokens): ResumeOutcome {
  const token = read(params, 'resume', 'x-ws-resume')
  if (token === undefined) return { asked: false, resumed: false }
  const invalid: ResumeOutcome = { asked: true, resumed: false, failed: 'invalid' }
  const offset = count(read(params, 'offset', 'x-ws-offset') ?? '0')
  if (offset < 0) return invalid
  const { numbered } = protocolOf(params)
  const sent = numbered ? count(read(params, 'sent', 'x-ws-sent')) : 0
  if (sent < 0) return invalid
  if (!tokens.claim(token)) return invalid
  const used = token as string
  if (!session.saved) return { asked: true, resumed: false, failed: 'unknown_session', used }
  session.saved = false
  if (ROUTES[route].replay && offset >= AHEAD) return { asked: true, resumed: false, failed: 'gap', used }
  if (numbered && (sent < session.received || sent - session.received > MAX_RESEND)) return { ...invalid, used }
  return { asked: true, resumed: true, offset, used }
}
