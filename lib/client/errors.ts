/*
 * The client's errors: one class, a stable `code` per failure. `send` and `close` throw
 * theirs; `request` rejects with its own or the server's; the others (an attempt that failed, a silent server, giving up) go to the
 * client's `error` listeners.
 */

export const ClientErrorCodes = {
  /** `send` while disconnected found `maxQueueSize` sends waiting already (thrown). */
  QUEUE_FULL: 'WS_CLIENT_QUEUE_FULL',
  /** `send` before `connect()` or after the client closed for good (thrown); `connect()` cut short by `close()` (rejected). */
  CLOSED: 'WS_CLIENT_CLOSED',
  /** An attempt was not ready (open, and welcomed when a welcome is awaited) within `openTimeout`. */
  OPEN_TIMEOUT: 'WS_CLIENT_OPEN_TIMEOUT',
  /** Nothing came from the server for `heartbeat.timeout`: the connection is left and a new one made. */
  SERVER_SILENT: 'WS_CLIENT_SERVER_SILENT',
  /** The WebSocket reported an error (connection refused, an HTTP status instead of the upgrade…); `cause` is its event. */
  SOCKET_ERROR: 'WS_CLIENT_SOCKET_ERROR',
  /** A frame could not be read (an envelope with bad base64, a presence frame that does not parse); `cause` or the message says why. */
  BAD_FRAME: 'WS_CLIENT_BAD_FRAME',
  /** `protocol: 'stabilizer'`, but the server's first frame was no welcome: the connection runs plain. */
  NOT_STABILIZER: 'WS_CLIENT_NOT_STABILIZER',
  /** Reconnecting stopped: a close code that forbids it, `maxAttempts` failed, reconnect off, or a URL the WebSocket refuses. */
  GAVE_UP: 'WS_CLIENT_GAVE_UP',
  /** `request` got no answer within its timeout (rejected). */
  REQUEST_TIMEOUT: 'WS_CLIENT_REQUEST_TIMEOUT'
} as const

/**
 * The server's codes a `request` rejects with (its error frame's `code`, PROTOCOL.md):
 * what the message router answers, and INTERNAL when the handler failed.
 */
export type AnswerErrorCode = 'VALIDATION_FAILED' | 'UNKNOWN_TYPE' | 'RATE_LIMITED' | 'INTERNAL' | 'INVALID_JSON' | 'INVALID_MESSAGE' | 'BINARY_NOT_ALLOWED' | 'UNKNOWN_REQUEST'

/** One of ClientErrorCodes, or the server's code when a `request` was answered with an error. */
export type ClientErrorCode = typeof ClientErrorCodes[keyof typeof ClientErrorCodes] | AnswerErrorCode

export class ClientError extends Error {
  readonly code: ClientErrorCode

  constructor (code: ClientErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'ClientError'
    this.code = code
  }
}
