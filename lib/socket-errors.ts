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

/** True when ws rejected a message for being larger than its maxPayload. */
export function isTooLarge (err: Error & { code?: unknown }): boolean {
  return err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH'
}
