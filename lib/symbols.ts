/*
 * The plugin's own state on objects it shares with users (sockets, connections) hangs off
 * these symbols, never off string keys: users cannot collide with them, and none of it is
 * in the published types (`stripInternal`).
 */

/** @internal A managed socket's ManagedConnection (inbound/listeners.ts). */
export const kConnection = Symbol('fastify-websocket-stabilizer.connection')
/** @internal A request's pending connection, from the upgrade's preHandler to the handler (upgrade.ts). */
export const kPending = Symbol('fastify-websocket-stabilizer.pending')
/** @internal A connection's manager, as the host of its methods. */
export const kHost = Symbol('fastify-websocket-stabilizer.host')
/** @internal A connection's rooms (rooms.ts). */
export const kRooms = Symbol('fastify-websocket-stabilizer.rooms')
/** @internal When a connection connected, ms since the epoch. */
export const kConnectedAt = Symbol('fastify-websocket-stabilizer.connected-at')
/** @internal The upgrade request, kept on routes whose handlers or refreshes need it. */
export const kRequest = Symbol('fastify-websocket-stabilizer.request')
/** @internal Per-type rate-limit buckets of the message router. */
export const kBuckets = Symbol('fastify-websocket-stabilizer.buckets')
/** @internal Inbound rate limiting and violations (inbound/rate-limit.ts). */
export const kInbound = Symbol('fastify-websocket-stabilizer.inbound')
/** @internal When the outstanding heartbeat ping was sent (heartbeat.ts). */
export const kPingSentAt = Symbol('fastify-websocket-stabilizer.ping-sent-at')
/** @internal Since when a send buffer has been above the high-water mark (outbound/write.ts). */
export const kSlowSince = Symbol('fastify-websocket-stabilizer.slow-since')
/** @internal Plugin messages held behind the app's open fragment (outbound/write.ts). */
export const kHeld = Symbol('fastify-websocket-stabilizer.held')
/** @internal The count of a numbered client's frames (protocol 2, inbound/acks.ts). */
/** @internal A resumed connection's tokens until the client is heard from (resume/resumption.ts). */
export const kHandshake = Symbol('fastify-websocket-stabilizer.handshake')
export const kGeneration = Symbol('fastify-websocket-stabilizer.generation')
export const kUpstream = Symbol('fastify-websocket-stabilizer.upstream')
/** @internal The first error a socket emitted. */
export const kSocketError = Symbol('fastify-websocket-stabilizer.socket-error')
/** @internal The connection's methods that only the plugin calls. */
export const kDispatch = Symbol('fastify-websocket-stabilizer.dispatch')
export const kMarkClosing = Symbol('fastify-websocket-stabilizer.mark-closing')
export const kMarkClosed = Symbol('fastify-websocket-stabilizer.mark-closed')
