/*
 * fastify-websocket-stabilizer/client: the reconnecting client, for browsers and Node.
 * Nothing here imports from Node.
 */
export { StabilizerClient } from './client.ts'
export type { ClientEvents, ClientState, CloseInfo, Outgoing } from './client.ts'
export type { ClientOptions, ProtocolMode } from './options.ts'
export { backoffCap, backoffDelay, DEFAULT_RECONNECT, type ReconnectOptions } from './backoff.ts'
export { DEFAULT_HEARTBEAT, type HeartbeatOptions } from './heartbeat.ts'
export type { Clock } from './clock.ts'
export { ClientError, ClientErrorCodes, type AnswerErrorCode, type ClientErrorCode } from './errors.ts'
export type { ClientApi, ClientRequestOptions, RequestEntry, RequestHandler, RequestMap } from './requests.ts'
export type { MessageFrame, ResumeFailure, WelcomeFrame } from './frames.ts'
export type { SocketConstructor, SocketLike } from './socket.ts'
export type { PresenceChange, PresenceMeta, RoomPresence } from './presence.ts'
export { CloseCode, reconnectAdvice, type CloseCodeValue } from '../close-codes.ts'
