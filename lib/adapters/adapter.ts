import type { FastifyBaseLogger } from 'fastify'
import type { ResumeStore, ResumeStoreOptions } from './resume-store.ts'

/*
 * The delivery seam between instances. The manager always delivers to its own
 * connections itself; an adapter only carries messages to the other instances and
 * hands it theirs. Local delivery never waits on an adapter.
 */

/** The payload of a message between instances: encoded once, as `encode` made it. */
export interface ClusterPayload {
  data: Buffer
  binary: boolean
  /** Text that is encoded JSON, not a plain string (it goes into protocol envelopes as it is). */
  json?: boolean
  /** Never logged for replay, on any instance. */
  volatile?: boolean
}

/** A message travelling between instances. */
export type ClusterMessage =
  | ClusterPayload & { type: 'broadcast', rooms?: string[], exclude?: string[] }
  | ClusterPayload & { type: 'user', userId: string }
  | ClusterPayload & { type: 'client', clientId: string }
  | { type: 'disconnect', clientId: string, code: number, reason: string }

/** What the manager gives an adapter when it starts. */
export interface AdapterHost {
  /** Unique per manager (per process and plugin instance). */
  readonly instanceId: string
  /** Delivers a message from another instance to this instance's own connections. */
  deliver (message: ClusterMessage): void
  readonly log: FastifyBaseLogger
  /**
   * Called when the link to the other instances came back after an outage: messages
   * between instances may have been lost meanwhile (the manager emits `gap`).
   */
  gap (info: GapInfo): void
}

/** What was lost while the other instances could not be reached. */
export interface GapInfo {
  /** How long the link was down, in ms. */
  downMs: number
  /** Messages of this instance that could not be handed on (the outage queue was full). */
  dropped: number
}

/** How an adapter is doing, for readiness probes. */
export interface AdapterHealth {
  /** `down`: the other instances cannot be reached now (local delivery still works). */
  status: 'up' | 'down'
  [detail: string]: unknown
}

export interface WsAdapter {
  readonly name: string
  /** Called once, in the plugin's onReady. */
  start (host: AdapterHost): void | Promise<void>
  /** Hands a message to the other instances. Must not throw and must not make the caller wait. */
  publish (message: ClusterMessage): void
  /**
   * Makes the store of resume state (token nonces, sessions, copies of the replay log),
   * called once when the plugin is registered. It must be shared by all instances for a
   * client to resume on another one.
   */
  resumeStore (options: ResumeStoreOptions, log: FastifyBaseLogger): ResumeStore
  /** How the link to the other instances is doing. */
  health (): AdapterHealth
  /** Called once on fastify.close(), after every local connection is closed. */
  close (): void | Promise<void>
}
