import type { Clock } from './clock.ts'
import { ClientError, ClientErrorCodes, type AnswerErrorCode } from './errors.ts'

/*
 * Requests both ways, the client's side (PROTOCOL.md, "Requests"): `request` sends the
 * envelope `{ type, id, data }` and waits for `{ type: "<type>.result", id, data }` or an
 * error frame with that id; `handle` answers the server's `{ type: "request", id, name,
 * data }` with `{ type: "response", id, data | error }`.
 */

/** One request type: the `data` it carries and the `answer` it gets. */
export interface RequestEntry { data: unknown, answer: unknown }

/** What one side's requests are, by type (an interface or a type alias of RequestEntry's). */
export type RequestMap = Record<string, RequestEntry>

/**
 * The third type parameter of StabilizerClient: `requests`, what the server answers
 * (`RequestsOf<typeof messages>` from the server's `defineMessages`), and `handles`, what
 * the server asks of the client (the map its `conn.typed<M>()` takes too). Either can be left out.
 */
export interface ClientApi {
  requests?: object
  handles?: object
}

export type RequestsOfApi<Api> = Api extends { requests: infer R extends object } ? R : RequestMap
export type HandlesOfApi<Api> = Api extends { handles: infer H extends object } ? H : RequestMap
/** The `data` of request type K in the map M. */
export type DataIn<M, K extends keyof M> = M[K] extends { data: infer D } ? D : unknown
/** The `answer` of request type K in the map M. */
export type AnswerIn<M, K extends keyof M> = M[K] extends { answer: infer A } ? A : unknown

export interface ClientRequestOptions {
  /** How long to wait for the answer, in ms (default the client's `requestTimeout`, 10 s). */
  timeout?: number
}

/** A handler of the server's requests: its answer (awaited) goes back; a thrown error's `code` (or INTERNAL) too. */
export type RequestHandler<Data = unknown, Answer = unknown> = (data: Data) => Answer | Promise<Answer>

interface Pending {
  readonly result: string
  readonly resolve: (data: unknown) => void
  readonly reject: (err: Error) => void
  readonly timer: unknown
}

const REQUEST = '{"type":"request"'
const HEAD = '{"type":"'

export class ClientRequests {
  #next = 0
  #pending = new Map<string, Pending>()
  #handlers = new Map<string, RequestHandler>()
  #clock: Clock
  #timeout: number
  #send: (frame: string) => void
  #failed: (err: unknown) => void

  /** `send` sends or queues a frame (it throws as the client's `send` does); `failed` hears of answers that could not go. */
  constructor (clock: Clock, timeout: number, send: (frame: string) => void, failed: (err: unknown) => void) {
    this.#clock = clock
    this.#timeout = timeout
    this.#send = send
    this.#failed = failed
  }

  request (type: string, data: unknown, options: ClientRequestOptions | undefined): Promise<unknown> {
    const timeout = options?.timeout ?? this.#timeout
    if (typeof type !== 'string' || type === '') return Promise.reject(new TypeError(`Expected a request type to be a non-empty string, got \`${String(type)}\``))
    if (typeof timeout !== 'number' || !(timeout >= 1) || timeout === Infinity) return Promise.reject(new TypeError(`Expected \`timeout\` to be a number >= 1, got \`${String(timeout)}\``))
    const id = `c${++this.#next}`
    let frame: string
    try {
      frame = JSON.stringify({ type, id, data })
      this.#send(frame)
    } catch (err) {
      return Promise.reject(err)
    }
    return new Promise((resolve, reject) => {
      const timer = this.#clock.setTimeout(() => {
        this.#pending.delete(id)
        reject(new ClientError(ClientErrorCodes.REQUEST_TIMEOUT, `Expected an answer to the request \`${type}\` (${id}) within ${timeout} ms, got none`))
      }, timeout)
      this.#pending.set(id, { result: `${type}.result`, resolve, reject, timer })
    })
  }

  handle (type: string, handler: RequestHandler | undefined): void {
    if (handler === undefined) this.#handlers.delete(type)
    else if (typeof handler !== 'function') throw new TypeError(`Expected the handler of \`${type}\` to be a function, got \`${String(handler)}\``)
    else this.#handlers.set(type, handler)
  }

  /** True when a text frame was a request of the server's or an answer to a pending request: consumed. */
  take (text: string): boolean {
    const request = text.startsWith(REQUEST)
    if (!request && (this.#pending.size === 0 || !text.startsWith(HEAD))) return false
    let frame: unknown
    try {
      frame = JSON.parse(text)
    } catch {
      return false
    }
    return this.takeValue(frame)
  }

  /**
   * The same for a message envelope's `data` (protocol 2 sends these frames through the
   * replay log, so they arrive wrapped, with an offset).
   */
  takeValue (value: unknown): boolean {
    if (typeof value !== 'object' || value === null) return false
    const frame = value as { type?: unknown, id?: unknown, name?: unknown, data?: unknown, code?: unknown, message?: unknown }
    if (frame.type === 'request') return this.#serve(frame)
    const pending = typeof frame.id === 'string' ? this.#pending.get(frame.id) : undefined
    if (pending === undefined) return false
    if (frame.type === pending.result) {
      this.#settle(frame.id as string, pending)
      pending.resolve(frame.data)
      return true
    }
    if (frame.type !== 'error' || typeof frame.code !== 'string') return false
    this.#settle(frame.id as string, pending)
    pending.reject(new ClientError(frame.code as AnswerErrorCode, String(frame.message)))
    return true
  }

  /** The client closed for good: every pending request fails with WS_CLIENT_CLOSED. */
  close (): void {
    for (const [id, pending] of [...this.#pending]) {
      this.#settle(id, pending)
      pending.reject(new ClientError(ClientErrorCodes.CLOSED, 'the client closed for good before the answer came'))
    }
  }

  #settle (id: string, pending: Pending): void {
    this.#pending.delete(id)
    this.#clock.clearTimeout(pending.timer)
  }

  #serve (frame: { id?: unknown, name?: unknown, data?: unknown }): boolean {
    const { id, name } = frame
    if (typeof id !== 'string' || typeof name !== 'string') return false
    const handler = this.#handlers.get(name)
    if (handler === undefined) {
      this.#answer({ type: 'response', id, error: { code: 'UNKNOWN_TYPE', message: `no handler for ${JSON.stringify(name).slice(0, 64)}` } })
      return true
    }
    new Promise(resolve => resolve(handler(frame.data))).then(
      answer => this.#answer({ type: 'response', id, data: answer ?? null }),
      (err: unknown) => {
        const { code, message } = (err ?? {}) as { code?: unknown, message?: unknown }
        this.#answer({ type: 'response', id, error: { code: typeof code === 'string' ? code : 'INTERNAL', message: typeof message === 'string' ? message : String(err) } })
      })
    return true
  }

  #answer (frame: object): void {
    let text: string
    try {
      text = JSON.stringify(frame)
    } catch (err) {
      const id = (frame as { id: string }).id
      text = JSON.stringify({ type: 'response', id, error: { code: 'INTERNAL', message: `the answer could not be serialized: ${String(err)}` } })
    }
    try {
      this.#send(text)
    } catch (err) {
      this.#failed(err)
    }
  }
}
