import type { ClusterCounts, ClusterMessage, ClusterOp, WsAdapter } from './adapters/adapter.ts'
import type { OutboundMessage } from './outbound/encode.ts'
import type { Target } from './resume/replay-log.ts'
import { toCluster, type Outgoing } from './delivery.ts'
import { Deadlines } from './deadlines.ts'
import { CloseCode } from './close-codes.ts'
import { AdapterUnavailableError, ClusterTimeoutError, ShutdownError, WebSocketStabilizerError } from './errors.ts'

/*
 * `wsManager.cluster`'s operations: a request over the broker to every other live instance
 * (an `op` with a request id and this instance as its origin), each answering with what it
 * did on its own connections (a `result` addressed to the origin), as Socket.IO's
 * `emitWithAck` does. The answers to wait for are the instances the adapter's presence
 * knows as live when the call is made (the Redis adapter: those whose liveness key is
 * there), counted before anything is sent; an instance that answers without being
 * expected counts too. Pending ops wait on one Deadlines timer, and are settled when the
 * manager shuts down.
 */

/** `cluster.broadcast()`'s answer: the sums of every instance's own counts. */
export interface ClusterBroadcastResult {
  /** The instances that were to answer, this one included, and any other that answered in time. */
  instances: number
  /** How many of them answered in time (this one always does). */
  answered: number
  /** Connections targeted, over the instances that answered. */
  total: number
  succeeded: number
  failed: number
  /** Some instance did not answer in time (or the app closed first): the counts are those of the ones that did. */
  partial: boolean
}

export interface ClusterOpOptions {
  /** How long to wait for the other instances' answers, in ms; default: the plugin's `cluster.timeout`. */
  timeout?: number
}

export interface ClusterSendOptions extends ClusterOpOptions {
  /** Never logged for replay: a client that was away does not get it after a resume. */
  volatile?: boolean
}

export interface ClusterBroadcastOptions extends ClusterSendOptions {
  /** Only members of this room (or of any of these rooms). */
  room?: string | string[]
  /** clientIds that do not get it (typically the sender). */
  exclude?: string | Iterable<string>
}

/** What the manager gives the operations. */
export interface ClusterOpsHost {
  readonly instanceId: string
  readonly adapter: WsAdapter
  /** The default wait for answers (`cluster.timeout`), in ms. */
  readonly timeout: number
  /** Whether the client is connected to this instance. */
  connected (clientId: string): boolean
  /** The message encoded once and logged for the target (as `broadcast` and `send` do). */
  prepare (message: OutboundMessage, target: Target, volatile: boolean | undefined): Outgoing
  /** Writes a prepared message to this instance's connections that the target names. */
  deliver (target: Target, out: Outgoing): ClusterCounts
  /** Does an op on this instance's connections: one that came from another instance, or a room change or disconnect of a client here. */
  apply (op: ClusterOp): ClusterCounts
}

interface Pending {
  readonly id: number
  /** `send()` and the like, for the error messages. */
  readonly call: string
  /** A broadcast sums the answers; the other ops end with the first instance that did it. */
  readonly sums: boolean
  readonly timeout: number
  /** The instances expected to answer that have not yet. */
  readonly waiting: Set<string>
  instances: number
  answered: number
  readonly counts: ClusterCounts
  readonly resolve: (value: ClusterBroadcastResult | boolean) => void
  readonly reject: (err: Error) => void
}

export class ClusterOps {
  #host: ClusterOpsHost
  #next = 0
  #pending = new Map<number, Pending>()
  #closed = false
  #deadlines = new Deadlines<Pending>(pending => { this.#finish(pending, 'timeout') })

  constructor (host: ClusterOpsHost) {
    this.#host = host
  }

  async send (clientId: string, message: OutboundMessage, options: ClusterSendOptions = {}): Promise<boolean> {
    const timeout = this.#timeoutOf(options.timeout, 'send()')
    const target = { clientId }
    if (this.#host.connected(clientId)) return this.#host.deliver(target, this.#host.prepare(message, target, options.volatile)).succeeded === 1
    const others = await this.#others('send()')
    // logged even when nobody has the client now: it may resume and get it, as with `send`
    const out = this.#host.prepare(message, target, options.volatile)
    return await this.#ask(toCluster(target, out) as ClusterOp, 'send()', others, timeout) as boolean
  }

  async join (clientId: string, room: string, options?: ClusterOpOptions): Promise<boolean> {
    return await this.#roomChange('join', clientId, room, options)
  }

  async leave (clientId: string, room: string, options?: ClusterOpOptions): Promise<boolean> {
    return await this.#roomChange('leave', clientId, room, options)
  }

  async disconnect (clientId: string, code: number = CloseCode.NORMAL, reason = '', options?: ClusterOpOptions): Promise<boolean> {
    return await this.#target({ type: 'disconnect', clientId, code, reason }, 'disconnect()', options)
  }

  async broadcast (message: OutboundMessage, options: ClusterBroadcastOptions = {}): Promise<ClusterBroadcastResult> {
    const timeout = this.#timeoutOf(options.timeout, 'broadcast()')
    const rooms = options.room === undefined ? undefined : typeof options.room === 'string' ? [options.room] : options.room
    const exclude = options.exclude === undefined ? undefined : typeof options.exclude === 'string' ? [options.exclude] : [...new Set(options.exclude)]
    const others = await this.#others('broadcast()')
    const target = { rooms, exclude }
    const out = this.#host.prepare(message, target, options.volatile)
    // this instance's own share, written in the same turn as the op is handed to the others
    const { total, succeeded, failed } = this.#host.deliver(target, out)
    return await this.#ask(toCluster(target, out) as ClusterOp, 'broadcast()', others, timeout, { total, succeeded, failed }) as ClusterBroadcastResult
  }

  /** An op or a result from another instance (the manager's remote delivery). */
  receive (message: Extract<ClusterMessage, { type: 'op' | 'result' }>): void {
    if (message.type === 'op') {
      const { total, succeeded, failed } = this.#host.apply(message.op)
      this.#host.adapter.publish({ type: 'result', id: message.id, to: message.from, from: this.#host.instanceId, counts: { total, succeeded, failed } })
      return
    }
    // every instance hears every result: the others' are not for this one
    if (message.to === this.#host.instanceId) this.#answered(this.#pending.get(message.id), message.from, message.counts)
  }

  /** The shutdown: pending broadcasts resolve partial, the other ops reject with ShutdownError; new ones are refused. */
  close (): void {
    this.#closed = true
    for (const pending of [...this.#pending.values()]) this.#finish(pending, 'closed')
    this.#deadlines.stop()
  }

  async #roomChange (type: 'join' | 'leave', clientId: string, room: string, options: ClusterOpOptions | undefined): Promise<boolean> {
    if (typeof room !== 'string' || room === '') throw new WebSocketStabilizerError(`Expected a room name to be a non-empty string, got \`${String(room)}\``)
    return await this.#target({ type, clientId, room }, `${type}()`, options)
  }

  /** A room change or a disconnect: done here at once when the client is here, otherwise asked of the others. */
  async #target (op: ClusterOp & { clientId: string }, call: string, options: ClusterOpOptions | undefined): Promise<boolean> {
    const timeout = this.#timeoutOf(options?.timeout, call)
    if (this.#host.connected(op.clientId)) return this.#host.apply(op).succeeded > 0
    return await this.#ask(op, call, await this.#others(call), timeout) as boolean
  }

  /**
   * Hands the op to the others and waits for their answers (none to wait for: at once). A
   * broadcast comes with this instance's own counts, and sums; the other ops end with the first that did it.
   */
  #ask (op: ClusterOp, call: string, others: string[], timeout: number, local?: ClusterCounts): Promise<ClusterBroadcastResult | boolean> {
    const id = ++this.#next
    return new Promise((resolve, reject) => {
      const sums = local !== undefined
      const counts = local ?? { total: 0, succeeded: 0, failed: 0 }
      const pending: Pending = { id, call, sums, timeout, waiting: new Set(others), instances: others.length + (sums ? 1 : 0), answered: sums ? 1 : 0, counts, resolve, reject }
      this.#pending.set(id, pending)
      if (others.length === 0) {
        this.#finish(pending, 'done')
        return
      }
      this.#deadlines.set(pending, Date.now() + timeout)
      this.#host.adapter.publish({ type: 'op', id, from: this.#host.instanceId, op })
    })
  }

  /** An instance's answer; one that was not expected counts as one more instance. */
  #answered (pending: Pending | undefined, from: string, counts: ClusterCounts): void {
    // late (after the timeout), or for an op that is settled
    if (pending === undefined) return
    if (!pending.waiting.delete(from)) pending.instances++
    pending.answered++
    pending.counts.total += counts.total
    pending.counts.succeeded += counts.succeeded
    pending.counts.failed += counts.failed
    if (!pending.sums && counts.succeeded > 0) this.#finish(pending, 'done')
    else if (pending.waiting.size === 0) this.#finish(pending, 'done')
  }

  #finish (pending: Pending, why: 'done' | 'timeout' | 'closed'): void {
    this.#pending.delete(pending.id)
    this.#deadlines.delete(pending)
    const { counts } = pending
    if (pending.sums) {
      pending.resolve({ instances: pending.instances, answered: pending.answered, ...counts, partial: why !== 'done' })
      return
    }
    // the instance that holds the client answered: it did it, or it could not (a failed write)
    if (why === 'done' || counts.total > 0) {
      pending.resolve(counts.succeeded > 0)
      return
    }
    pending.reject(why === 'closed'
      ? new ShutdownError(`cluster.${pending.call} was pending`)
      : new ClusterTimeoutError(pending.call, pending.answered, pending.instances, pending.timeout))
  }

  /** The other live instances, the answers to wait for; refused once the shutdown began (before the count or while it was made). */
  async #others (call: string): Promise<string[]> {
    this.#refuseClosed(call)
    const adapter = this.#host.adapter
    let others: string[]
    try {
      others = await adapter.presence.remoteInstances()
    } catch (err) {
      throw new AdapterUnavailableError(adapter.name, `cluster.${call}`, String(err), { cause: err })
    }
    this.#refuseClosed(call)
    return others
  }

  #refuseClosed (call: string): void {
    if (this.#closed) throw new ShutdownError(`cluster.${call} refused`)
  }

  #timeoutOf (timeout: number | undefined, call: string): number {
    timeout ??= this.#host.timeout
    if (typeof timeout !== 'number' || !(timeout >= 1) || timeout === Infinity) throw new WebSocketStabilizerError(`Expected cluster.${call}'s \`timeout\` to be a number of milliseconds >= 1, got \`${String(timeout)}\``)
    return timeout
  }
}
