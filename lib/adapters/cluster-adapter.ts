import { randomUUID } from 'node:crypto'
import { RepeatFilter } from './repeat-filter.ts'
import type { FastifyBaseLogger } from 'fastify'
import type { AdapterHealth, BrokerHost, ClusterMessage, PresenceManager, WsAdapter } from './adapter.ts'
import type { ResumeStore, ResumeStoreOptions } from './resume-store.ts'
import { decodeClusterMessage, encodeClusterMessage } from './cluster-codec.ts'

/*
 * What every transport between instances shares (socket.io-adapter's `ClusterAdapter`):
 * each message is stamped with this adapter's origin and encoded once (cluster-codec.ts);
 * the transport's echo of its own messages is ignored; while the link is down, publishes
 * wait in a bounded queue (`maxQueue`) and go out in order when it is back, beyond the
 * bound they are dropped and counted; after an outage the host is told what may have
 * been lost (`gap`). A transport implements only how bytes travel: `doStart`,
 * `doPublish`, `doClose`, `canPublish`, `isUp`, `details`, and says when its link goes down (`linkDown`) and comes back
 * (`linkUp`), and hands on what it receives (`receive`).
 */

export interface ClusterAdapterOptions {
  /** Publishes kept while the link is down; beyond it they are dropped and counted. */
  maxQueue: number
}

export abstract class ClusterAdapter implements WsAdapter {
  abstract readonly name: string
  abstract readonly presence: PresenceManager
  #maxQueue: number
  #host: BrokerHost | undefined = undefined
  #log: FastifyBaseLogger | undefined = undefined
  #queue: Buffer[] = []
  /** Marks this adapter's messages, so that it can ignore its own echo (known before the start). */
  #origin = randomUUID()
  /** This instance's count of the messages it published (the header's `s`). */
  #sent = 0
  #repeats = new RepeatFilter()
  #dropped = 0
  #published = 0
  #received = 0
  #downSince = 0
  #gaps = 0
  #lastError: string | undefined = undefined
  #closed = false

  constructor (options: ClusterAdapterOptions) {
    this.#maxQueue = options.maxQueue
  }

  abstract resumeStore (options: ResumeStoreOptions, log: FastifyBaseLogger): ResumeStore

  /** Connects the transport and subscribes; resolves once messages can go both ways. */
  protected abstract doStart (): Promise<void>
  /** Sends the bytes of one message to the other instances. */
  protected abstract doPublish (data: Buffer): Promise<unknown>
  /** Whether a publish can go out now (otherwise it is queued). */
  protected abstract canPublish (): boolean
  /** Whether messages can go both ways now. */
  protected abstract isUp (): boolean
  /** Ends the transport; the host is gone by then. */
  protected abstract doClose (): Promise<void>
  /** What the transport adds to `health()` (the state of its connections). */
  protected abstract details (): Record<string, unknown>

  /**
   * Starts the transport. When it cannot connect the app starts all the same (degraded:
   * local delivery works) and the transport keeps trying.
   */
  async start (host: BrokerHost): Promise<void> {
    this.#host = host
    this.#log = host.log
    try {
      await this.doStart()
      // what was published before the start
      this.#flush()
    } catch (err) {
      this.#downSince = Date.now()
      this.error(err as Error)
      host.log.warn({ err }, `${this.name} unreachable at start: running on this instance alone until it is back`)
    }
  }

  publish (message: ClusterMessage): void {
    const data = encodeClusterMessage(this.#origin, message, ++this.#sent)
    if (!this.canPublish()) {
      this.#enqueue(data)
      return
    }
    this.#send(data)
  }

  #send (data: Buffer): void {
    this.#published++
    this.doPublish(data).catch((err: Error) => {
      // lost with the connection, or timed out: it may or may not have gone out, so this
      // adapter does not send it again (ioredis may: receivers drop the repeat, repeat-filter.ts);
      // it counts as dropped, reported now or when the link is back
      this.#published--
      this.#dropped++
      this.error(err)
      if (this.#downSince === 0) this.#reportGap(0)
    })
  }

  #enqueue (data: Buffer): void {
    if (this.#queue.length >= this.#maxQueue) {
      this.#dropped++
      return
    }
    this.#queue.push(data)
  }

  /** The transport received bytes: a message of another instance is delivered, this one's echo ignored. */
  protected receive (buffer: Buffer): void {
    const decoded = decodeClusterMessage(buffer)
    if (decoded === undefined) {
      this.#log?.warn({ bytes: buffer.length }, 'not a cluster message: ignored')
      return
    }
    if (decoded.origin === this.#origin) return
    if (decoded.seq !== undefined && this.#repeats.repeated(decoded.origin, decoded.seq)) {
      this.#log?.debug({ origin: decoded.origin, seq: decoded.seq }, 'a cluster message published twice: delivered once')
      return
    }
    this.#received++
    this.#host?.deliver(decoded.message)
  }

  /** The transport lost its link. */
  protected linkDown (): void {
    if (this.#downSince === 0 && !this.#closed) this.#downSince = Date.now()
  }

  /** The transport's link is back after an outage: send what was kept, report the gap. */
  protected linkUp (): void {
    const since = this.#downSince
    if (since === 0) return
    this.#downSince = 0
    this.#flush()
    this.#reportGap(Date.now() - since)
  }

  #flush (): void {
    const queue = this.#queue
    this.#queue = []
    for (const data of queue) this.#send(data)
  }

  #reportGap (downMs: number): void {
    const dropped = this.#dropped
    this.#dropped = 0
    this.#gaps++
    this.#host?.gap({ downMs, dropped })
  }

  protected error (err: Error): void {
    this.#lastError = err.message
    this.#log?.debug({ err }, `${this.name} error`)
  }

  health (): AdapterHealth {
    return {
      status: this.isUp() ? 'up' : 'down',
      ...this.details(),
      queued: this.#queue.length,
      dropped: this.#dropped,
      published: this.#published,
      received: this.#received,
      gaps: this.#gaps,
      lastError: this.#lastError
    }
  }

  async close (): Promise<void> {
    this.#closed = true
    this.#host = undefined
    await this.doClose()
  }
}
