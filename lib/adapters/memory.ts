import type { AdapterHealth, BrokerHost, ClusterMessage, InstanceInfo, PresenceEntry, PresenceHost, PresenceManager, WsAdapter } from './adapter.ts'
import type { FastifyBaseLogger } from 'fastify'
import { MemoryResumeStore } from './memory-resume-store.ts'
import type { ResumeStoreOptions } from './resume-store.ts'

/**
 * Joins the managers of one process: every MemoryAdapter created with the same bus
 * receives what the others publish (on a later turn of the event loop, as over a
 * network), sees their connections and shares their resume state, so a client can resume
 * on another of them. Useful to run several Fastify instances as one in tests.
 */
export class MemoryBus {
  /** The adapters that receive what is published on the bus. */
  readonly members = new Set<MemoryAdapter>()
  /** The presences that answer for their instance's connections. */
  readonly presences = new Set<MemoryPresence>()
  /** The resume state the members share, made by the first that asks. */
  store: MemoryResumeStore | undefined = undefined
}

/**
 * The default adapter. Without a bus it serves a single instance: there is nobody to
 * publish to, so publishing costs nothing. With a bus it relays to the bus's other members.
 * In one process nothing is lost and nothing echoes, so it needs none of ClusterAdapter's
 * queue, origin stamp or gap accounting: a message is handed on as the object it is.
 */
export class MemoryAdapter implements WsAdapter {
  readonly name = 'memory'
  readonly bus: MemoryBus | undefined
  readonly presence: MemoryPresence
  #host: BrokerHost | undefined = undefined

  constructor (options: { bus?: MemoryBus } = {}) {
    this.bus = options.bus
    this.presence = new MemoryPresence(options.bus)
  }

  start (host: BrokerHost): void {
    this.#host = host
    this.bus?.members.add(this)
  }

  resumeStore (options: ResumeStoreOptions, _log?: FastifyBaseLogger): MemoryResumeStore {
    if (this.bus === undefined) return new MemoryResumeStore(options, false).acquire()
    this.bus.store ??= new MemoryResumeStore(options, true)
    return this.bus.store.acquire()
  }

  publish (message: ClusterMessage): void {
    const bus = this.bus
    if (bus === undefined || bus.members.size < 2) return
    for (const member of bus.members) {
      if (member !== this) setImmediate(relay, member, message)
    }
  }

  /** In one process the other instances are always reachable. */
  health (): AdapterHealth {
    return { status: 'up' }
  }

  close (): void {
    this.bus?.members.delete(this)
    this.#host = undefined
  }

  /** @internal */
  receive (message: ClusterMessage): void {
    this.#host?.deliver(message)
  }
}

function relay (member: MemoryAdapter, message: ClusterMessage): void {
  member.receive(message)
}

/**
 * Presence in one process: the other members' registries are in this process, read when
 * asked, so a connection, a join or a leave has nothing to tell anyone.
 */
export class MemoryPresence implements PresenceManager {
  readonly #bus: MemoryBus | undefined
  #host: PresenceHost | undefined = undefined

  constructor (bus: MemoryBus | undefined) {
    this.#bus = bus
  }

  start (host: PresenceHost): void {
    this.#host = host
    this.#bus?.presences.add(this)
  }

  connected (): void {}
  roomsChanged (): void {}
  disconnected (): void {}

  async remoteConnections (): Promise<PresenceEntry[]> {
    const entries: PresenceEntry[] = []
    for (const host of this.#others()) {
      for (const conn of host.connections()) entries.push({ id: conn.id, userId: conn.userId, rooms: [...conn.rooms] })
    }
    return entries
  }

  async remoteUserConnections (userId: string): Promise<number> {
    let count = 0
    for (const host of this.#others()) count += host.userConnectionCount(userId)
    return count
  }

  async remoteInstances (): Promise<string[]> {
    const ids: string[] = []
    for (const host of this.#others()) ids.push(host.instanceId)
    return ids
  }

  /** The other members: alive as long as they are on the bus, their heartbeat is now. */
  async instances (): Promise<InstanceInfo[]> {
    const found: InstanceInfo[] = []
    const now = Date.now()
    for (const host of this.#others()) {
      const connections = [...host.connections()].length
      found.push({ id: host.instanceId, alive: true, connections, lastHeartbeat: now })
    }
    return found
  }

  * #others (): Generator<PresenceHost> {
    if (this.#bus === undefined) return
    for (const presence of this.#bus.presences) {
      if (presence !== this && presence.#host !== undefined) yield presence.#host
    }
  }

  close (): void {
    this.#bus?.presences.delete(this)
    this.#host = undefined
  }
}
