import type { FastifyBaseLogger } from 'fastify'

/*
 * The delivery seam between instances. The manager always delivers to its own
 * connections itself; an adapter only carries messages to the other instances and
 * hands it theirs. Local delivery never waits on an adapter.
 */

/** A message travelling between instances. `data` is already encoded, once. */
export type ClusterMessage =
  | { type: 'broadcast', data: Buffer, binary: boolean, rooms?: string[], exclude?: string[] }
  | { type: 'user', userId: string, data: Buffer, binary: boolean }
  | { type: 'client', clientId: string, data: Buffer, binary: boolean }

/** What the manager gives an adapter when it starts. */
export interface AdapterHost {
  /** Unique per manager (per process and plugin instance). */
  readonly instanceId: string
  /** Delivers a message from another instance to this instance's own connections. */
  deliver (message: ClusterMessage): void
  readonly log: FastifyBaseLogger
}

export interface WsAdapter {
  readonly name: string
  /** Called once, in the plugin's onReady. */
  start (host: AdapterHost): void | Promise<void>
  /** Hands a message to the other instances. Must not throw and must not make the caller wait. */
  publish (message: ClusterMessage): void
  /** Called once on fastify.close(), after every local connection is closed. */
  close (): void | Promise<void>
}
