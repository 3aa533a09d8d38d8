/*
 * fastify-websocket-stabilizer/client: the reconnecting client, for browsers and Node.
 * It imports nothing from Node.
 */
export { StabilizerClient } from './client.ts'
export type { ClientEvents, ClientOptions, ClientState, CloseInfo, HeartbeatOptions, Outgoing } from './client.ts'
export { backoffCap, backoffDelay, DEFAULT_BACKOFF, type BackoffOptions } from './backoff.ts'
export { ClientError, CLOSED, GAVE_UP, OPEN_TIMEOUT, QUEUE_FULL, SERVER_SILENT } from './errors.ts'
export type { WelcomeFrame } from './frames.ts'
export type { SocketConstructor, SocketLike } from './socket.ts'
export { CloseCode, reconnectAdvice } from '../close-codes.ts'
