import type { FastifyRequest } from 'fastify'
import type { ResolvedIdentity } from './identity.ts'
import type { RouteSettings } from './route-settings.ts'
import type { PendingResume } from './resume/resumption.ts'
import type { AuthFailure, Principal } from './auth.ts'

/** @internal What is known of a connection before it is registered: the upgrade's preHandler fills it, as does `register()`. */
export interface PendingConnection {
  identity: ResolvedIdentity
  route: RouteSettings
  /** The upgrade request; undefined for `register()`ed sockets. */
  request?: FastifyRequest
  resume?: PendingResume
  /** The client asked for protocol 2 (numbered frames, acknowledged) on a resume-protocol route. */
  numbered?: boolean
  /** Protocol 2: the most unacknowledged frames the client keeps (`w`), when it says. */
  window?: number
  /** The user's connections on the other instances, for the per-user limit. */
  elsewhere?: number
  principal?: Principal
  /** With `auth.reject: 'close'`: why the connection is to be refused once upgraded. */
  refused?: AuthFailure
}
