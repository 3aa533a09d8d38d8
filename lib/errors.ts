import createError from '@fastify/error'

/**
 * Every error this plugin throws or rejects with. All share the base
 * `WebSocketStabilizerError`, so `err instanceof WebSocketStabilizerError`
 * tells them apart from other errors; `err.code` is stable and starts with `FST_WS_`.
 */

/** Base of every error below; also used for failures that have no code of their own. */
export const WebSocketStabilizerError = createError('FST_WS_ERROR', '%s', 500)

// @fastify/error accepts any Error subclass as the base at run time; its types only name ErrorConstructor
const Base = WebSocketStabilizerError as unknown as ErrorConstructor

/** No connection with that clientId is registered here. */
export const ConnectionNotFoundError = createError(
  'FST_WS_CONNECTION_NOT_FOUND', 'No connection with clientId `%s` is registered', 404, Base)

/** A connection was refused because a connection limit was reached. */
export const ConnectionLimitExceededError = createError(
  'FST_WS_CONNECTION_LIMIT_EXCEEDED', 'Connection refused: %s', 503, Base)

/** A connection sent nothing (no pong, no message) for the heartbeat timeout and was terminated. */
export const ConnectionTimeoutError = createError(
  'FST_WS_CONNECTION_TIMEOUT', 'Connection `%s` sent nothing for %d ms (heartbeat timeout)', 408, Base)

/** A reconnect token was well formed and correctly signed but has expired. */
export const TokenExpiredError = createError(
  'FST_WS_TOKEN_EXPIRED', 'Reconnect token expired at %s', 401, Base)

/** A reconnect token was malformed, tampered with, signed with an unknown secret or already used. */
export const InvalidTokenError = createError(
  'FST_WS_INVALID_TOKEN', 'Invalid reconnect token: %s', 401, Base)

/** Every delivery of a broadcast failed; `err.result` holds the BroadcastResult. */
export const BroadcastFailedError = createError(
  'FST_WS_BROADCAST_FAILED', 'Broadcast failed for all %d recipients', 500, Base)

/** The manager is shutting down or has shut down and refuses the operation. */
export const ShutdownError = createError(
  'FST_WS_SHUTDOWN', 'The WebSocket manager is shut down: %s', 503, Base)

/** A plugin option is invalid; the message names the field, what was expected and what came. */
export const InvalidOptionsError = createError(
  'FST_WS_INVALID_OPTIONS', 'Invalid fastify-websocket-stabilizer options: %s', 500, Base)

/** A route's `config.ws` is invalid; the message names the route and the field. */
export const InvalidRouteOptionsError = createError(
  'FST_WS_INVALID_ROUTE_OPTIONS', 'Invalid `config.ws` on route %s: %s', 500, Base)

/** The plugin was registered twice on the same Fastify instance tree. */
export const AlreadyRegisteredError = createError(
  'FST_WS_ALREADY_REGISTERED', 'fastify-websocket-stabilizer is already registered on this instance; register it once, at the root', 500, Base)

/** `wsConnectionOf(request)` on a request that has no managed connection: not a WebSocket request, or an unmanaged route. */
export const NotManagedError = createError(
  'FST_WS_NOT_MANAGED', 'Expected a WebSocket request on a route the plugin manages, got %s %s: %s', 500, Base)

/** A message of a type that cannot be sent (not a string, Buffer, typed array, ArrayBuffer or JSON-serializable value). */
export const InvalidMessageError = createError(
  'FST_WS_INVALID_MESSAGE', 'Cannot send a message of type %s: expected a string, Buffer, Uint8Array, ArrayBuffer or a JSON-serializable value', 500, Base)

/** The adapter could not answer (the Redis adapter: Redis is unreachable); `err.cause` is the error it failed with. */
export const AdapterUnavailableError = createError<'FST_WS_ADAPTER_UNAVAILABLE', 503, [adapter: string, what: string, cause: string, options: { cause: unknown }]>(
  'FST_WS_ADAPTER_UNAVAILABLE', 'The `%s` adapter could not answer %s: %s', 503, Base)

/** `wsManager.cluster.send/join/leave/disconnect`: an instance expected to answer did not in time, and none said it holds the client. */
export const ClusterTimeoutError = createError<'FST_WS_CLUSTER_TIMEOUT', 504, [call: string, answered: number, expected: number, timeout: number]>(
  'FST_WS_CLUSTER_TIMEOUT', 'cluster.%s: %d of %d instances answered within %d ms, none holds the client', 504, Base)

/** An adapter's constructor options are invalid; the message names the adapter and the field. */
export const InvalidAdapterOptionsError = createError(
  'FST_WS_INVALID_ADAPTER_OPTIONS', 'Invalid %s options: %s', 500, Base)

/** `RedisEmitter`: Redis did not take the message (unreachable past ioredis' retries, or the emitter is closed); `err.cause` is the ioredis error. */
export const EmitFailedError = createError<'FST_WS_EMIT_FAILED', 503, [what: string, cause: string, options?: { cause: unknown }]>(
  'FST_WS_EMIT_FAILED', 'RedisEmitter could not publish %s: %s', 503, Base)

/** `conn.request()`: the client did not answer within the timeout. */
export const RequestTimeoutError = createError(
  'FST_WS_REQUEST_TIMEOUT', 'The client `%s` did not answer the request `%s` within %d ms', 504, Base)

/** `conn.request()`: the client answered with an error; `err.clientCode` is its code (`UNKNOWN_TYPE` when it has no handler). */
export const RequestFailedError = createError<'FST_WS_REQUEST_FAILED', 502, [clientId: string, type: string, code: string, message: string]>(
  'FST_WS_REQUEST_FAILED', 'The client `%s` answered the request `%s` with %s: %s', 502, Base)

/** `conn.request()`: the connection ended for good (not a drop a resume can heal) before the client answered. */
export const RequestClosedError = createError(
  'FST_WS_REQUEST_CLOSED', 'The connection `%s` ended before it answered the request `%s`', 503, Base)

// ---- fastify-websocket-stabilizer/testing: each message says what was awaited or expected, on which route, and what came instead

/** Nothing awaited came in time: a message, a close, or the connection's opening. */
export const TestingTimeoutError = createError(
  'FST_WS_TESTING_TIMEOUT', 'Timed out after %d ms waiting for %s', 500, Base)

/** The socket closed before the awaited message came (messages that came before are still taken). */
export const TestingClosedError = createError(
  'FST_WS_TESTING_CLOSED', 'The socket to `%s` closed with %s before %s came', 500, Base)

/** `send` on a socket that is closing or closed. */
export const TestingNotOpenError = createError(
  'FST_WS_TESTING_NOT_OPEN', 'Cannot send on the socket to `%s`: it is %s', 500, Base)

/** `expectClose(code)`: the socket closed, with another code. */
export const TestingCloseCodeError = createError(
  'FST_WS_TESTING_CLOSE_CODE', 'Expected the socket to `%s` to close with %d, it closed with %s', 500, Base)

/** The server answered the upgrade with an HTTP status; `err.statusCode` is that status. */
export const TestingUpgradeRefusedError = createError(
  'FST_WS_TESTING_UPGRADE_REFUSED', 'The upgrade to `%s` was refused with HTTP %d', 500, Base)

/** `json()` took a message that is not JSON (binary, or text that does not parse). */
export const TestingNotJsonError = createError(
  'FST_WS_TESTING_NOT_JSON', 'Expected a JSON message on `%s`, got %s', 500, Base)

/** `transport: 'listen'` on an app that is not listening. */
export const TestingNotListeningError = createError(
  'FST_WS_TESTING_NOT_LISTENING', "Cannot connect to `%s` over a port: the app is not listening (call `app.listen()` first, or use `transport: 'inject'`)", 500, Base)
