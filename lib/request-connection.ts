import type { FastifyRequest } from 'fastify'
import type { ManagedConnection } from './connection.ts'
import { NotManagedError } from './errors.ts'
import { redactUrl } from './redact.ts'

/*
 * The managed connection of a request, for handlers of managed routes, where it is always
 * there: registered before the handler runs (a connection refused at registration is there
 * too, closed). `request.wsConnection` stays `ManagedConnection | null`, as it is null on
 * every other request (HTTP ones, unmanaged WebSocket routes); this saves each handler the
 * null check, and a handler on the wrong route learns it at once, by a clear error.
 */

/** The request fields read: all of a FastifyRequest, of whatever route generics. */
export type ConnectionRequest = Pick<FastifyRequest, 'wsConnection' | 'ws' | 'method' | 'url'>

/** `request.wsConnection`, never null: throws `NotManagedError` (`FST_WS_NOT_MANAGED`) on a request without one. */
export function wsConnectionOf (request: ConnectionRequest): ManagedConnection {
  const conn = request.wsConnection
  if (conn != null) return conn
  const why = request.ws ? 'its route is not managed (`config.ws: false`, or added before the plugin was registered)' : 'not a WebSocket request'
  throw new NotManagedError(request.method, redactUrl(request.url), why)
}
