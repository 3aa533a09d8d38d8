import type { RawData } from 'ws'
import type { DisconnectReason, ManagedConnection, RequestOptions } from './connection.ts'
import type { InboundRejection } from './stats.ts'
import { reconnectAdvice } from './close-codes.ts'
import { Deadlines } from './deadlines.ts'
import { InvalidMessageError, RequestClosedError, RequestFailedError, RequestTimeoutError, WebSocketStabilizerError } from './errors.ts'
import { writeExchange } from './outbound/exchange.ts'

/*
 * The server's requests to its clients (`conn.request`): `{ type: "request", id: "s:<n>",
 * name, data }` out, `{ type: "response", id, data | error }` back (PROTOCOL.md). Pending
 * requests are kept by clientId, not by connection: on resume-protocol routes a drop is not
 * the end, and the resumed connection's answer settles them. One timer for all of them;
 * nothing is kept for a connection until it makes a request.
 */

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
}

const SHAPE = 'expected {"type":"response","id":"s:…","data":…} or {"type":"response","id":"s:…","error":{"code":"…","message":"…"}}'

export class ServerRequests {
  #next = 0
  #timeout: number
  #host: RequestsHost
  #byId = new Map<string, Pending>()
  #byClient = new Map<string, Set<Pending>>()
  #deadlines = new Deadlines<Pending>(pending => {
    this.#settle(pending)
    pending.reject(new RequestTimeoutError(pending.clientId, pending.name, pending.timeout))
  })

  constructor (timeout: number, host: RequestsHost) {
    this.#timeout = timeout
    this.#host = host
  }

  request (conn: ManagedConnection, name: string, data: unknown, options: RequestOptions | undefined): Promise<unknown> {
    if (typeof name !== 'string' || name === '') throw new WebSocketStabilizerError(`Expected a request type to be a non-empty string, got \`${String(name)}\``)
    const timeout = options?.timeout ?? this.#timeout
    if (typeof timeout !== 'number' || !(timeout >= 1) || timeout === Infinity) throw new WebSocketStabilizerError(`Expected \`timeout\` to be a number of milliseconds >= 1, got \`${String(timeout)}\``)
    if (!conn.isOpen) return Promise.reject(new RequestClosedError(conn.id, name))
    const id = `s:${++this.#next}`
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
    let frame: { id?: unknown, data?: unknown, error?: { code?: unknown, message?: unknown } }
    try {
      frame = JSON.parse(data.toString())
    } catch {
      this.#host.rejected(conn, 'INVALID_JSON', 'the message is not JSON', undefined)
      return
    }
    const id = frame.id
    if (typeof id !== 'string') {
      this.#host.rejected(conn, 'INVALID_MESSAGE', SHAPE, undefined)
      return
    }
    const error = frame.error
    if (error !== undefined && (typeof error !== 'object' || error === null || typeof error.code !== 'string')) {
      this.#host.rejected(conn, 'INVALID_MESSAGE', SHAPE, id)
      return
    }
    const pending = this.#byId.get(id)
    if (pending === undefined || pending.clientId !== conn.id) {
      this.#host.rejected(conn, 'UNKNOWN_REQUEST', `no request ${JSON.stringify(id).slice(0, 64)} is waiting for an answer`, id)
      return
    }
    this.#settle(pending)
    if (error === undefined) {
      pending.resolve(frame.data ?? null)
      return
    }
    const code = error.code as string
    const err = new RequestFailedError(conn.id, pending.name, code.slice(0, 64), String(error.message ?? '').slice(0, 200)) as Error & { clientCode?: string }
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
