/**
 * WebSocket close codes the plugin sends, and what a client should do after each.
 * 1000-1015 are defined by RFC 6455 and the IANA registry; 4000-4999 are ours.
 */
export const CloseCode = {
  /** Normal closure: `disconnect()` without a code, or the client said goodbye. */
  NORMAL: 1000,
  /** Going away: the server is shutting down (choose with `shutdown.closeCode`). */
  GOING_AWAY: 1001,
  /** Policy violation: the client broke a rule (for example it flooded the inbound queue). */
  POLICY_VIOLATION: 1008,
  /** A message was larger than `limits.maxMessageSize`. */
  MESSAGE_TOO_BIG: 1009,
  /** The server hit an unexpected condition. */
  INTERNAL_ERROR: 1011,
  /** Service restart: the default close code of a graceful shutdown. */
  SERVICE_RESTART: 1012,
  /** Try again later: the server is at `limits.maxConnections`. */
  TRY_AGAIN_LATER: 1013,
  /** Another connection took this clientId. Do not reconnect: the other connection would be replaced in turn. */
  REPLACED: 4001,
  /** Not authenticated (no, bad or expired credentials) on a route with `auth.reject: 'close'`, or the credentials expired while connected. */
  UNAUTHORIZED: 4401,
  /** Authenticated but not allowed (missing scope, or a refresh for another subject). */
  FORBIDDEN: 4403,
  /** The user already has `maxConnectionsPerUser` connections. Do not reconnect. */
  TOO_MANY_CONNECTIONS: 4409,
  /** Over the inbound rate limit again and again. Do not reconnect at once. */
  RATE_LIMITED: 4429
} as const

export type CloseCodeValue = typeof CloseCode[keyof typeof CloseCode]

const RECONNECT = new Set<number>([1001, 1006, 1011, 1012])
const BACK_OFF = new Set<number>([1013])

/**
 * What a client should do after the connection closed with `code`:
 * `reconnect` (with jittered backoff), `backoff` (reconnect, but wait longer)
 * or `stop` (a reconnect would be refused or would fight another connection).
 */
export function reconnectAdvice (code: number): 'reconnect' | 'backoff' | 'stop' {
  if (RECONNECT.has(code)) return 'reconnect'
  if (BACK_OFF.has(code)) return 'backoff'
  return 'stop'
}
