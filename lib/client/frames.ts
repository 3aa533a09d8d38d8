/*
 * The server's frames, as PROTOCOL.md describes them: welcome, message envelopes with
 * offsets, and the heartbeat's ping and pong.
 */

export interface WelcomeFrame {
  type: 'welcome'
  v: number
  clientId: string
  token: string
  offset: number
  resumed: boolean
  replayed?: number
  resumeFailed?: 'invalid' | 'expired' | 'unknown_session' | 'gap'
}

export interface MessageFrame { type: 'message', offset?: number, binary?: boolean, data: unknown }

export type ServerFrame = WelcomeFrame | MessageFrame

/** Heartbeat frames are matched by their first bytes, exactly as the server writes them. */
export function isPing (text: string): boolean {
  return text.startsWith('{"type":"ping"')
}

export function isPong (text: string): boolean {
  return text.startsWith('{"type":"pong"')
}

/** Parses a text frame of the protocol; undefined for anything else. */
export function parseFrame (text: string): ServerFrame | undefined {
  if (!text.startsWith('{"type":')) return undefined
  try {
    const frame = JSON.parse(text) as ServerFrame
    return frame.type === 'welcome' || frame.type === 'message' ? frame : undefined
  } catch {
    return undefined
  }
}

/** Decodes base64 without Node's Buffer (atob exists in browsers and Node 16+). */
export function fromBase64 (text: string): Uint8Array {
  const binary = atob(text)
  const bytes = new Uint8Array(binary.length)
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i)
  return bytes
}
