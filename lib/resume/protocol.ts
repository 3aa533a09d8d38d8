/*
 * The frames of the resume protocol (see PROTOCOL.md), on routes with `config.ws.reconnect`.
 * Routes without it get plain messages.
 */

import type { Encoded } from '../outbound/encode.ts'

/** Why a resume gave a fresh session instead (the welcome's `resumeFailed`). */
export type ResumeFailure = 'invalid' | 'expired' | 'unknown_session' | 'gap' | 'unavailable'

export const PROTOCOL_VERSION = 1
/** The version a client gets when it asks for it (`v=2`): its data frames are counted and acknowledged. */
export const NUMBERED_VERSION = 2

/** Wraps an encoded message in its envelope once; the payload bytes are not re-serialized. */
export function envelope (message: Encoded, offset: number | undefined): Buffer {
  const head = offset === undefined ? '{"type":"message"' : `{"type":"message","offset":${offset}`
  if (message.binary) return Buffer.from(`${head},"binary":true,"data":"${message.data.toString('base64')}"}`)
  // an encoded JSON value goes in as it is; a plain string becomes a JSON string
  const data = message.json === true ? message.data : Buffer.from(JSON.stringify(message.data.toString()))
  return Buffer.concat([Buffer.from(`${head},"data":`), data, CLOSE])
}

const CLOSE = Buffer.from('}')
const HEAD = '{"type":"message","offset":'

/** The same message frame with another offset (for entries logged again on another instance). */
export function reoffset (frame: Buffer, offset: number): Buffer {
  const rest = frame.indexOf(',', HEAD.length)
  return Buffer.concat([Buffer.from(HEAD + String(offset)), frame.subarray(rest)])
}

export interface Welcome {
  clientId: string
  token: string
  offset: number
  resumed: boolean
  replayed?: number
  resumeFailed?: ResumeFailure
  /** Protocol 2 only: how many of the session's client frames the server has had. */
  received?: number
}

export function welcomeFrame (w: Welcome): Buffer {
  return Buffer.from(JSON.stringify({ type: 'welcome', v: w.received === undefined ? PROTOCOL_VERSION : NUMBERED_VERSION, ...w }))
}

/** An error frame: `{ type: "error", code, message, id?, retryAfterMs? }` (see PROTOCOL.md). */
export function errorFrame (code: string, message: string, extra?: { id?: unknown, retryAfterMs?: number }): Buffer {
  return Buffer.from(JSON.stringify({ type: 'error', code, message, ...extra }))
}
