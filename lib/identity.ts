import { randomUUID } from 'node:crypto'
import type { FastifyRequest } from 'fastify'

/** Who a connection is: what `identify` returns. Every field is optional. */
export interface Identity {
  /** Unique per connection; a new connection with a clientId already connected replaces the old one. Default: a random UUID. */
  clientId?: string
  /** The user behind the connection; one user may have many connections (devices, tabs). */
  userId?: string
  /** Anything the app wants to keep with the connection. */
  metadata?: Record<string, unknown>
}

/** Reads the identity from the upgrade request, sync or async. Runs before the upgrade: a throw rejects it over HTTP. */
export type IdentifyFn = (request: FastifyRequest) => Identity | undefined | Promise<Identity | undefined>

export interface ResolvedIdentity {
  clientId: string
  userId: string | undefined
  metadata: Record<string, unknown>
}

/** The metadata of a connection that was given none: shared, never written (ManagedConnection makes its own on first read). */
export const NO_METADATA: Record<string, unknown> = Object.freeze({})

/**
 * A random UUID as one flat string. `randomUUID()` returns it as a tree of some 30
 * concatenated pieces (about 420 bytes of heap), which a connection would keep as its id
 * for as long as it lives; reading a character makes V8 flatten it in place (56 bytes).
 */
function newClientId (): string {
  const id = randomUUID()
  id.charCodeAt(0)
  return id
}

/** Fills the defaults and checks the types of what `identify` returned. Returns an error message or the identity. */
export function normalizeIdentity (value: Identity | undefined): ResolvedIdentity | string {
  if (value === undefined || value === null) return { clientId: newClientId(), userId: undefined, metadata: NO_METADATA }
  if (typeof value !== 'object') return `identify must return an object, got ${typeof value}`
  const { clientId, userId, metadata } = value
  if (clientId !== undefined && (typeof clientId !== 'string' || clientId === '')) return 'identify returned a clientId that is not a non-empty string'
  if (userId !== undefined && userId !== null && (typeof userId !== 'string' || userId === '')) return 'identify returned a userId that is not a non-empty string'
  if (metadata !== undefined && (typeof metadata !== 'object' || metadata === null)) return 'identify returned metadata that is not an object'
  return { clientId: clientId ?? newClientId(), userId: userId ?? undefined, metadata: metadata ?? NO_METADATA }
}
