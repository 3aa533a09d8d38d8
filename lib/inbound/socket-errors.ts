/**
 * How loud a socket error is. Peers vanishing (ECONNRESET, EPIPE…) are normal for
 * WebSockets and go to debug; protocol errors from ws (`WS_ERR_*`: bad frames,
 * oversize messages) are the peer's fault and go to warn; anything else is ours: error.
 */
export function errorLevel (err: Error & { code?: unknown, errno?: unknown }): 'debug' | 'warn' | 'error' {
  const code = typeof err.code === 'string' ? err.code : ''
  if (code.startsWith('WS_ERR_')) return 'warn'
  if (err.errno !== undefined || NETWORK_CODES.has(code)) return 'debug'
  return 'error'
}

const NETWORK_CODES = new Set(['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ECONNABORTED', 'ERR_STREAM_PREMATURE_CLOSE', 'ERR_STREAM_DESTROYED'])

/** True when ws rejected a message for being larger than its maxPayload (not a bogus frame length, also 1009). */
export function isTooLarge (err: Error & { code?: unknown }): boolean {
  return err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH'
}

/** The close codes ws sends for its own protocol errors (ws/lib/receiver.js); 1002 for the rest. */
const SENT_CODES: Record<string, number> = {
  WS_ERR_UNSUPPORTED_MESSAGE_LENGTH: 1009,
  WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH: 1009,
  WS_ERR_INVALID_UTF8: 1007,
  WS_ERR_TOO_MANY_BUFFERED_PARTS: 1008
}

/**
 * The close code ws sent the peer for this protocol error. ws stops reading when it
 * closes for one, so the socket's own close event says 1006 (no close frame read back);
 * this is the code the peer got.
 */
export function sentCloseCode (err: Error & { code?: unknown }): number {
  return SENT_CODES[String(err.code)] ?? 1002
}
