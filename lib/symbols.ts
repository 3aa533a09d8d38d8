/** Per-socket and per-route state hangs off these symbols, never off string keys users could collide with. */
export const kConnection = Symbol('fastify-websocket-stabilizer.connection')
export const kRouteSettings = Symbol('fastify-websocket-stabilizer.route-settings')
export const kPending = Symbol('fastify-websocket-stabilizer.pending')
export const kManager = Symbol('fastify-websocket-stabilizer.manager')
export const kRooms = Symbol('fastify-websocket-stabilizer.rooms')
export const kHost = Symbol('fastify-websocket-stabilizer.host')
