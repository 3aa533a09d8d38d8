// Kept in the emitted .d.ts (`preserve`), where a type-only import that names nothing is
// dropped: it brings @fastify/websocket's augmentation of fastify to every consumer.
/// <reference types="@fastify/websocket" preserve="true" />
import type { WsManager } from '../lib/manager.ts'
import type { ManagedConnection } from '../lib/connection.ts'
import type { RouteWsOptions } from '../lib/route-options.ts'

/*
 * What the plugin adds to Fastify's types. @fastify/websocket's own augmentation
 * (`websocket: true` routes, `request.ws`, `fastify.websocketServer`, `injectWS`)
 * comes with it.
 */
declare module 'fastify' {
  interface FastifyInstance {
    /** The connection manager: registry, rooms, messaging, shutdown. */
    wsManager: WsManager
  }
  interface FastifyRequest {
    /**
     * The managed connection of a WebSocket request on a managed route, registered
     * before the handler runs; null on every other request.
     */
    wsConnection: ManagedConnection | null
  }
  interface FastifyContextConfig {
    /** This WebSocket route's stabilizer options, or false to leave it unmanaged. */
    ws?: RouteWsOptions | false
  }
}

export type { WsManager, ManagedConnection, RouteWsOptions }
