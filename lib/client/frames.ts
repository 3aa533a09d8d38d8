/*
 * The server's frames, as PROTOCOL.md describes them: the heartbeat's ping and pong, and
 * on resume-protocol routes the welcome and the message envelopes.
 */

/** Why a resume failed (PROTOCOL.md); `unavailable`: the server could not reach its session store. */
export type ResumeFailure = 'invalid' | 'expired' | 'unknown_session' | 'gap' | 'unavailable'

export interface WelcomeFrame {
  type: 'welcome'
  v: number
  clientId: string
  token: string
  offset: number
  resumed: boolean
  replayed?: number
  resumeFailed?: ResumeFailure
  /** Protocol 2 (`v: 2`): how many of the session's frames the server has had. */
  received?: number
}

export interface MessageFrame { type: 'message', offset?: number, binary?: boolean, data: unknown }

const PING = '{"type":"ping"'
const PONG = '{"type":"pong"'

/** What the client sends to measure the latency (the server answers with a pong). */
export const CLIENT_PING = '{"type":"ping"}'

/** Heartbeat frames are matched by their first bytes, exactly as the server writes them. */
export function isPing (text: string): boolean {
  return text.startsWith(PING)
}

export function isPong (text: string): boolean {
  return text.startsWith(PONG)
}

/** The answer to a server ping: the same frame as a pong, so that its `ts` goes back. */
export function pongFor (ping: string): string {
  return PONG + ping.slice(PING.length)
}

/** A welcome frame, or undefined for anything else. */
export function parseWelcome (text: string): WelcomeFrame | undefined {
  return parseIf<WelcomeFrame>(text, '{"type":"welcome"')
}

/** Protocol 2: an acknowledgement's count, or undefined for anything else. */
export function parseAck (text: string): number | undefined {
  const ack = parseIf<{ received?: unknown }>(text, '{"type":"ack"')
  return typeof ack?.received === 'number' ? ack.received : undefined
}

/** Frames the server takes for heartbeat frames on a numbered connection: they are never counted. */
export function isHeartbeatLike (frame: unknown): boolean {
  return typeof frame === 'string' && (isPing(frame) || isPong(frame)) && new TextEncoder().encode(frame).length < 128
}

/** A message envelope, or undefined for anything else (which the app gets as it came). */
export function parseMessage (text: string): MessageFrame | undefined {
  return parseIf<MessageFrame>(text, '{"type":"message"')
}

function parseIf<T> (text: string, head: string): T | undefined {
  if (!text.startsWith(head)) return undefined
  try {
    return JSON.parse(text) as T
  } catch {
    return undefined
  }
}

/** Decodes base64 without Node's Buffer: `atob` is there in browsers and in Node. */
export function fromBase64 (text: string): Uint8Array {
  const binary = atob(text)
  const bytes = new Uint8Array(binary.length)
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i)
  return bytes
}
