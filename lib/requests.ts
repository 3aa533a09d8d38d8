import type { RawData } from 'ws'
import type { FastifyBaseLogger } from 'fastify'
import type { DisconnectReason, ManagedConnection, RequestOptions } from './connection.ts'
import type { InboundRejection } from './stats.ts'
import { reconnectAdvice } from './close-codes.ts'
import { Deadlines } from './deadlines.ts'
import { InvalidMessageError, RequestClosedError, RequestFailedError, RequestTimeoutError, WebSocketStabilizerError } from './errors.ts'
import { writeExchange } from './outbound/exchange.ts'
import { kGeneration } from './symbols.ts'

/*
 * The server's requests to its clients (`conn.request`): `{ type: "request", id:
 * "s:<instance>:<n>", name, data }` out, `{ type: "response", id, data | error }` back
 * (PROTOCOL.md). Pending requests are kept by clientId, not by connection: on resume-protocol
 * routes a drop is not the end, and the resumed connection's answer settles them — on this
 * instance, or on another one the client resumed on, which forwards the answer here over the
 * adapter (the id names the instance). One timer for all of them; nothing is kept for a
 * connection until it makes a request.
 */

/** A response frame as parsed: checked before it is used. */
interface Answer { id?: unknown, data?: unknown, error?: { code?: unknown, message?: unknown } }

interface Pending {
  readonly id: string
  readonly clientId: string
  readonly name: string
  readonly timeout: number
  readonly resolve: (answer: unknown) => void
  readonly reject: (err: Error) => void
}

export interface RequestsHost {
  /** A frame that fits no request: an error frame, counted as a violation (the inbound guard). */
  rejected (conn: ManagedConnection, code: InboundRejection, message: string, id: unknown): void
  /** An answer to a request of another instance: handed on to it (the adapter). */
  forward (instance: string, clientId: string, data: Buffer): void
  readonly log: FastifyBaseLogger
}

const SHAPE = 'expected {"type":"response","id":"s:…","data":…} or {"type":"response","id":"s:…","error":{"code":"…","message":"…"}}'
/** The id of a request of some instance: `s:<instance id, a UUID>:<n>`. */
const ID = /^s:([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}):\d{1,15}$/

export class ServerRequests {
  #next = 0
  #prefix: string
  #instance: string
  #timeout: number
  #host: RequestsHost
  #byId = new Map<string, Pending>()
  #byClient = new Map<string, Set<Pending>>()
  #deadlines = new Deadlines<Pending>(pending => {
    this.#settle(pending)
    pending.reject(new RequestTimeoutError(pending.clientId, pending.name, pending.timeout))
  })

  constructor (instanceId: string, timeout: number, host: RequestsHost) {
    this.#instance = instanceId
    this.#prefix = `s:${instanceId}:`
    this.#timeout = timeout
    this.#host = host
  }

  request (conn: ManagedConnection, name: string, data: unknown, options: RequestOptions | undefined): Promise<unknown> {
    if (typeof name !== 'string' || name === '') throw new WebSocketStabilizerError(`Expected a request type to be a non-empty string, got \`${String(name)}\``)
    const timeout = options?.timeout ?? this.#timeout
    if (typeof timeout !== 'number' || !(timeout >= 1) || timeout === Infinity) throw new WebSocketStabilizerError(`Expected \`timeout\` to be a number of milliseconds >= 1, got \`${String(timeout)}\``)
    if (!conn.isOpen) return Promise.reject(new RequestClosedError(conn.id, name))
    const id = this.#prefix + String(++this.#next)
    let frame: string
    try {
      frame = JSON.stringify({ type: 'request', id, name, data: data ?? null })
    } catch {
      return Promise.reject(new InvalidMessageError(typeof data))
    }
    return new Promise((resolve, reject) => {
      const pending: Pending = { id, clientId: conn.id, name, timeout, resolve, reject }
      this.#byId.set(id, pending)
      let mine = this.#byClient.get(conn.id)
      if (mine === undefined) this.#byClient.set(conn.id, mine = new Set())
      mine.add(pending)
      this.#deadlines.set(pending, Date.now() + timeout)
      writeExchange(conn, Buffer.from(frame))
    })
  }

  /** A `{"type":"response"…}` frame from a client. */
  response (conn: ManagedConnection, data: RawData): void {
    const frame = this.#parse(conn, data)
    if (frame === undefined) return
    const pending = this.#byId.get(frame.id)
    if (pending !== undefined && pending.clientId === conn.id) {
      this.#answer(pending, frame)
      return
    }
    const instance = ID.exec(frame.id)?.[1]
    if (pending === undefined && instance !== undefined && instance !== this.#instance && conn[kGeneration] > 0) {
      // a request of the instance the client was on before it resumed here
      this.#host.forward(instance, conn.id, data as Buffer)
      return
    }
    this.#host.rejected(conn, 'UNKNOWN_REQUEST', `no request ${JSON.stringify(frame.id).slice(0, 64)} is waiting for an answer`, frame.id)
  }

  /** A client's answer that another instance forwarded (checked there): settles the request when it still waits. */
  forwarded (clientId: string, data: Buffer): void {
    let frame: Answer
    try {
      frame = JSON.parse(data.toString())
    } catch {
      return
    }
    const pending = typeof frame.id === 'string' ? this.#byId.get(frame.id) : undefined
    if (pending === undefined || pending.clientId !== clientId) {
      this.#host.log.debug({ clientId }, 'forwarded answer dropped: no such request waits')
      return
    }
    this.#answer(pending, frame as Answer & { id: string })
  }

  /** The response frame, or undefined when it is none (the client got an error frame). */
  #parse (conn: ManagedConnection, data: RawData): (Answer & { id: string }) | undefined {
    let frame: Answer
    try {
      frame = JSON.parse(data.toString())
    } catch {
      this.#host.rejected(conn, 'INVALID_JSON', 'the message is not JSON', undefined)
      return undefined
    }
    const id = frame.id
    if (typeof id !== 'string') {
      this.#host.rejected(conn, 'INVALID_MESSAGE', SHAPE, undefined)
      return undefined
    }
    const error = frame.error
    if (error !== undefined && (typeof error !== 'object' || error === null || typeof error.code !== 'string')) {
      this.#host.rejected(conn, 'INVALID_MESSAGE', SHAPE, id)
      return undefined
    }
    return frame as Answer & { id: string }
  }

  #answer (pending: Pending, frame: Answer): void {
    this.#settle(pending)
    const error = frame.error
    if (error === undefined) {
      pending.resolve(frame.data ?? null)
      return
    }
    const code = error.code as string
    const err = new RequestFailedError(pending.clientId, pending.name, code.slice(0, 64), String(error.message ?? '').slice(0, 200)) as Error & { clientCode?: string }
    err.clientCode = code
    pending.reject(err)
  }

  /** A connection ended: its requests fail when it ended for good, and wait for a resume otherwise. */
  ended (conn: ManagedConnection, code: number, why: DisconnectReason): void {
    const mine = this.#byClient.get(conn.id)
    if (mine === undefined || why === 'replaced') return
    const resumable = conn.route.reconnect !== undefined && why !== 'server_shutdown' && reconnectAdvice(code) !== 'stop'
    if (resumable) return
    for (const pending of [...mine]) {
      this.#settle(pending)
      pending.reject(new RequestClosedError(conn.id, pending.name))
    }
  }

  #settle (pending: Pending): void {
    this.#byId.delete(pending.id)
    this.#deadlines.delete(pending)
    const mine = this.#byClient.get(pending.clientId)!
    mine.delete(pending)
    if (mine.size === 0) this.#byClient.delete(pending.clientId)
  }
}
