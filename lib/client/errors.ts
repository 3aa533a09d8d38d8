/** Errors of the client, each with a stable `code`. */
export class ClientError extends Error {
  readonly code: string

  constructor (code: string, message: string) {
    super(message)
    this.name = 'ClientError'
    this.code = code
  }
}

/** A send while disconnected found the queue full (`maxQueueSize`). */
export const QUEUE_FULL = 'WS_CLIENT_QUEUE_FULL'
/** A send after `close()`. */
export const CLOSED = 'WS_CLIENT_CLOSED'
/** The connection did not open within `openTimeout`. */
export const OPEN_TIMEOUT = 'WS_CLIENT_OPEN_TIMEOUT'
/** The server sent nothing for `heartbeat.timeout`. */
export const SERVER_SILENT = 'WS_CLIENT_SERVER_SILENT'
/** Reconnecting stopped: `maxAttempts` reached, or a close code that forbids it. */
export const GAVE_UP = 'WS_CLIENT_GAVE_UP'
