import type { FastifyInstance } from 'fastify'
import type { IncomingHttpHeaders } from 'node:http'
import type WebSocket from 'ws'
import { DEFAULT_TIMEOUT, WsTestClient } from './client.ts'
import { TestingNotListeningError, TestingTimeoutError } from '../errors.ts'
import { injectSocket, urlSocket, type Opening } from './open.ts'
import { within } from './deadline.ts'

/*
 * The entry point: `wsTesting(app, { test: t })` makes the clients of one test and closes
 * them all when it ends (or on `closeAll()`), so no socket or timer outlives the test.
 */

/** What tap's and node:test's `t` have in common: `t.after(fn)` runs fn (awaited) when the test ends. */
export interface TeardownTarget { after (fn: () => unknown): unknown }

/** How `connect(path)` reaches the app: `inject` through `app.injectWS` (no port), `listen` over the port it listens on. */
export type Transport = 'inject' | 'listen'

export interface WsTestingOptions {
  /** The test: every client is closed in its `after`. */
  test?: TeardownTarget
  /** Bound of every wait (opening, messages, closes), in ms. Default 2000. */
  timeout?: number
  /** Default `inject`. A `ws://` or `wss://` URL always opens a real socket. */
  transport?: Transport
}

export interface ConnectOptions {
  transport?: Transport
  /** Headers of the upgrade request (cookies, authorization, origin…). */
  headers?: IncomingHttpHeaders
  /** This client's bound of every wait, in ms. */
  timeout?: number
  /** Answer the server's `{"type":"ping"}` heartbeat frames (`heartbeat.mode: 'message'`) and keep them and pongs out of the inbox. Default false: every frame is kept. */
  answerPings?: boolean
}

const URL_PATTERN = /^wss?:\/\//

export class WsTesting {
  readonly #app: FastifyInstance
  readonly #timeout: number
  readonly #transport: Transport
  readonly #clients = new Set<WsTestClient<any, any>>()
  readonly #opening = new Set<Promise<unknown>>()

  constructor (app: FastifyInstance, options: WsTestingOptions = {}) {
    this.#app = app
    this.#timeout = options.timeout ?? DEFAULT_TIMEOUT
    this.#transport = options.transport ?? 'inject'
    options.test?.after(() => this.closeAll())
  }

  /** Clients connected and not closed yet. */
  get openClients (): number {
    return this.#clients.size
  }

  /**
   * Opens a client on a path of the app (`/chat?room=a`) or a `ws://` URL and resolves once
   * it is open; its inbox holds every message from the first. Rejects with
   * `FST_WS_TESTING_UPGRADE_REFUSED` (`statusCode` set) when the server answers with an HTTP status.
   */
  async connect<In = unknown, Out = unknown> (target: string, options: ConnectOptions = {}): Promise<WsTestClient<In, Out>> {
    const opening = this.#open<In, Out>(target, options)
    this.#opening.add(opening)
    try {
      return await opening
    } finally {
      this.#opening.delete(opening)
    }
  }

  /** Closes every client still open (a close frame, then terminate after `timeout`) and waits for the closes. */
  async closeAll (): Promise<void> {
    await Promise.allSettled(this.#opening)
    await Promise.all([...this.#clients].map(client => client.close()))
  }

  async #open<In, Out> (target: string, options: ConnectOptions): Promise<WsTestClient<In, Out>> {
    const timeout = options.timeout ?? this.#timeout
    const headers = options.headers ?? {}
    let client: WsTestClient<In, Out> | undefined
    const attach = (ws: WebSocket): void => {
      client = new WsTestClient<In, Out>(ws, target, { timeout, answerPings: options.answerPings === true })
    }
    let opening: Opening
    if (URL_PATTERN.test(target)) {
      opening = urlSocket(target, headers, attach)
    } else if ((options.transport ?? this.#transport) === 'listen') {
      if (!this.#app.server.listening) throw new TestingNotListeningError(target)
      opening = urlSocket(this.#app.listeningOrigin.replace(/^http/, 'ws') + target, headers, attach)
    } else {
      await this.#app.ready()
      opening = injectSocket(this.#app, target, headers, attach)
    }
    await within(opening.socket, timeout, () => {
      opening.abort()
      throw new TestingTimeoutError(timeout, `the connection to \`${target}\` to open`)
    })
    const opened = client as WsTestClient<In, Out>
    this.#clients.add(opened)
    opened.closed.then(() => this.#clients.delete(opened))
    return opened
  }
}

/** The clients of one test: `const ws = wsTesting(app, { test: t })`, then `await ws.connect('/path')`. */
export function wsTesting (app: FastifyInstance, options?: WsTestingOptions): WsTesting {
  return new WsTesting(app, options)
}
