import type { FastifyBaseLogger } from 'fastify'
import type { ResumeStore, ResumeStoreOptions } from './resume-store.ts'
import type { PresenceChange } from '../presence/wire.ts'

/*
 * The seams between instances, two contracts (as centrifuge's `Broker` and
 * `PresenceManager`): delivery, which carries messages to the other instances, and
 * presence, which tells what connections they have. The manager always delivers to its
 * own connections itself; local delivery never waits on an adapter. What every cluster
 * transport shares (origin, echo, outage queue, gaps) is in cluster-adapter.ts.
 */

/** The payload of a message between instances: encoded once, as `encode` made it. */
export interface ClusterPayload {
  data: Buffer
  binary: boolean
  /** Text that is encoded JSON, not a plain string (it goes into protocol envelopes as it is). */
  json?: boolean
  /** Never logged for replay, on any instance. */
  volatile?: boolean
  /** Its id in the sender's replay log: every instance logs it under the same id. */
  id?: string
}

/** A message travelling between instances. */
export type ClusterMessage =
  | ClusterPayload & { type: 'broadcast', rooms?: string[], exclude?: string[] }
  | ClusterPayload & { type: 'user', userId: string }
  | ClusterPayload & { type: 'client', clientId: string }
  | { type: 'disconnect', clientId: string, code: number, reason: string }
  /** A client's answer to a server request of another instance (`instance`), forwarded by the one the client resumed on. */
  | { type: 'answer', instance: string, clientId: string, data: Buffer }
  /** `wsManager.cluster.*`: an operation every instance does on its own connections and answers (cluster-ops.ts). */
  | { type: 'op', id: number, from: string, op: ClusterOp }
  /** The answer of one instance to an `op`, for the instance `to` that asked. */
  | { type: 'result', id: number, to: string, from: string, counts: ClusterCounts }
  /**
   * Room presence (lib/presence/): the changes of the connections of instance `from`. A
   * snapshot (`sync`) holds all of them and replaces what the others had of `from`; with
   * `ask` the others answer with their own.
   */
  | { type: 'presence', from: string, changes: PresenceChange[], sync?: 'ask' | 'answer' }

/** What a cluster operation asks of every instance: a delivery, as the messages above, or a room change. */
export type ClusterOp =
  | ClusterPayload & { type: 'broadcast', rooms?: string[], exclude?: string[] }
  | ClusterPayload & { type: 'client', clientId: string }
  | { type: 'disconnect', clientId: string, code: number, reason: string }
  | { type: 'join', clientId: string, room: string }
  | { type: 'leave', clientId: string, room: string }

/** What one instance did of an op: the connections it targeted there, and how many it reached. */
export interface ClusterCounts {
  total: number
  succeeded: number
  failed: number
}

/** A connection as the other instances see it. */
export interface PresenceEntry {
  readonly id: string
  readonly userId: string | undefined
  readonly rooms: Iterable<string>
  /** Set on connections that can resume, so that another instance can resume them if this one dies. */
  readonly session?: {
    readonly metadata: Record<string, unknown>
    readonly connectedAt: number
    /** How many times the client resumed before this connection. */
    readonly generation: number
    /** Protocol 2: the count of the client's frames; the presence records it (`recorded`) with the entry. */
    readonly upstream?: { readonly received: number, recorded: number }
  }
}

/** What the manager gives the delivery part of an adapter when it starts. */
export interface BrokerHost {
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

/** What the manager gives the presence part of an adapter when it starts. */
export interface PresenceHost {
  /** Unique per manager: the name under which the others see this instance. */
  readonly instanceId: string
  /** How long the presence of an instance that died is kept for its clients' resumes (`reconnect.maxDisconnect`), in ms. */
  readonly retention: number
  readonly log: FastifyBaseLogger
  /** This instance's connections (an iterator over the registry: do not keep it). */
  connections (): Iterable<PresenceEntry>
  /** How many connections a user has on this instance. */
  userConnectionCount (userId: string): number
}

/** Both hosts in one, for an adapter that is its own presence. */
export type AdapterHost = BrokerHost & PresenceHost

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

/**
 * Delivery between instances (centrifuge's `Broker`): it only carries messages to the other
 * instances and hands this one theirs. The manager always delivers to its own connections itself.
 */
export interface Broker {
  /** Called once, in the plugin's onReady. */
  start (host: BrokerHost): void | Promise<void>
  /** Hands a message to the other instances. Must not throw and must not make the caller wait. */
  publish (message: ClusterMessage): void
  /** How the link to the other instances is doing. */
  health (): AdapterHealth
  /** Called once on fastify.close(), after every local connection is closed and the presence is closed. */
  close (): void | Promise<void>
}

/** Another instance as its presence shows it (the dashboard's instance list). */
export interface InstanceInfo {
  readonly id: string
  /** False: it died without a shutdown; its connections are kept for resumes (`reconnect.maxDisconnect`). */
  readonly alive: boolean
  readonly connections: number
  /** When it last wrote its presence (ms since the epoch); undefined when it is no longer alive. */
  readonly lastHeartbeat: number | undefined
}

/**
 * Presence (centrifuge's `PresenceManager`): what the other instances know of this one's
 * connections. The three updates must not throw or wait; the two queries answer for the
 * other (live) instances only.
 */
export interface PresenceManager {
  /** Called once, in the plugin's onReady, after the broker started. */
  start (host: PresenceHost): void | Promise<void>
  connected (conn: PresenceEntry): void
  roomsChanged (conn: PresenceEntry): void
  disconnected (conn: PresenceEntry): void
  /** The connections of the other live instances. */
  remoteConnections (): Promise<PresenceEntry[]>
  /** How many connections the user has on the other live instances. */
  remoteUserConnections (userId: string): Promise<number>
  /** The ids of the other live instances: the answers a cluster operation waits for. */
  remoteInstances (): Promise<string[]>

  /** Optional: the other instances, each with its connection count and last heartbeat (the dashboard shows them). */
  instances? (): Promise<InstanceInfo[]>
  /** Called once on fastify.close(), after every local connection is closed, before the broker closes. */
  close (): void | Promise<void>
}

/**
 * What you pass as `adapter`: one object, the delivery between instances (it is the
 * `Broker`, as socket.io's adapter is), with the presence and the resume state that go with it.
 */
export interface WsAdapter extends Broker {
  readonly name: string
  readonly presence: PresenceManager
  /**
   * Makes the store of resume state (token nonces, sessions, copies of the replay log),
   * called once when the plugin is registered. It must be shared by all instances for a
   * client to resume on another one.
   */
  resumeStore (options: ResumeStoreOptions, log: FastifyBaseLogger): ResumeStore
}
