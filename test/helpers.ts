import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import WebSocket, { type ClientOptions, type RawData } from 'ws'
import type { AddressInfo } from 'node:net'
import wsStabilizer, { type WsStabilizerOptions } from '../plugin.ts'
import { injectSocket } from '../lib/testing/open.ts'

interface Test { after (fn: () => unknown): void }

/** A Fastify app with the plugin, listening on a free loopback port, closed after the test. */
export async function buildApp (t: Test, options: WsStabilizerOptions = {}, routes?: (app: FastifyInstance) => void, serverOptions: FastifyServerOptions = {}): Promise<FastifyInstance> {
  const app = Fastify(serverOptions)
  await app.register(wsStabilizer, options)
  if (routes !== undefined) routes(app)
  t.after(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  return app
}

/** The same app, not listening: reach it with inject() (no port), for tests where a real socket adds nothing. */
export async function buildInjectedApp (t: Test, options: WsStabilizerOptions = {}, routes?: (app: FastifyInstance) => void, serverOptions: FastifyServerOptions = {}): Promise<FastifyInstance> {
  const app = Fastify(serverOptions)
  await app.register(wsStabilizer, options)
  if (routes !== undefined) routes(app)
  t.after(() => app.close())
  await app.ready()
  return app
}

export function urlOf (app: FastifyInstance, path: string): string {
  const { port } = app.server.address() as AddressInfo
  return `ws://127.0.0.1:${port}${path}`
}

export interface Received { data: RawData, isBinary: boolean }

/** A real ws client whose inbox buffers every message, so none is missed between awaits. */
export class TestClient {
  readonly ws: WebSocket
  readonly closed: Promise<{ code: number, reason: string }>
  #inbox: Received[] = []
  #waiters: Array<(m: Received) => void> = []

  constructor (ws: WebSocket) {
    this.ws = ws
    ws.on('message', (data, isBinary) => {
      const waiter = this.#waiters.shift()
      if (waiter !== undefined) waiter({ data, isBinary })
      else this.#inbox.push({ data, isBinary })
    })
    this.closed = new Promise(resolve => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })))
    ws.on('error', () => {})
  }

  /** Opens a connection; rejects with the HTTP status when the upgrade is refused. */
  static open (url: string, options: ClientOptions = {}): Promise<TestClient> {
    const ws = new WebSocket(url, options)
    const client = new TestClient(ws)
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(client))
      ws.once('unexpected-response', (_req, res) => {
        reject(Object.assign(new Error(`Unexpected server response: ${String(res.statusCode)}`), { statusCode: res.statusCode, headers: res.headers }))
        ws.terminate()
      })
      ws.once('error', reject)
    })
  }

  get pending (): number {
    return this.#inbox.length
  }

  /** The next message, waiting at most timeoutMs. */
  nextMessage (timeoutMs = 2000): Promise<Received> {
    const queued = this.#inbox.shift()
    if (queued !== undefined) return Promise.resolve(queued)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1)
        reject(new Error(`no message within ${timeoutMs} ms`))
      }, timeoutMs)
      const waiter = (m: Received): void => {
        clearTimeout(timer)
        resolve(m)
      }
      this.#waiters.push(waiter)
    })
  }

  async next (timeoutMs?: number): Promise<string> {
    return (await this.nextMessage(timeoutMs)).data.toString()
  }

  async json<T = any> (timeoutMs?: number): Promise<T> {
    return JSON.parse(await this.next(timeoutMs)) as T
  }

  /** Takes every message received so far. */
  drain (): Received[] {
    return this.#inbox.splice(0)
  }

  /** Resolves true if no message arrives within ms. */
  async silentFor (ms: number): Promise<boolean> {
    try {
      await this.nextMessage(ms)
      return false
    } catch {
      return true
    }
  }

  send (data: string | Buffer | object): void {
    this.ws.send(typeof data === 'string' || Buffer.isBuffer(data) ? data : JSON.stringify(data))
  }

  close (): Promise<{ code: number, reason: string }> {
    if (this.ws.readyState === WebSocket.CONNECTING || this.ws.readyState === WebSocket.OPEN) this.ws.close()
    return this.closed
  }
}

export function connect (app: FastifyInstance, path: string, options?: ClientOptions): Promise<TestClient> {
  return TestClient.open(urlOf(app, path), options)
}

/**
 * connect() through `app.injectWS`, opened as the /testing helpers open it (the client is
 * wrapped before the upgrade, the in-memory stream closes as a socket does); a refused
 * upgrade rejects as connect() does.
 */
export async function inject (app: FastifyInstance, path: string): Promise<TestClient> {
  let client!: TestClient
  const opening = injectSocket(app, path, {}, ws => { client = new TestClient(ws) })
  await opening.socket.catch((err: { statusCode: number }) => {
    throw Object.assign(new Error(`Unexpected server response: ${String(err.statusCode)}`), { statusCode: err.statusCode })
  })
  return client
}

/** An app whose /ws route identifies by ?id=&user= and joins every connection to the room 'all'. */
export async function roomApp (t: Test, options = {}, build = buildApp): Promise<FastifyInstance> {
  return await build(t, options, app => {
    app.get('/ws', {
      websocket: true,
      config: {
        ws: {
          rooms: ['all'],
          identify: (request) => {
            const q = request.query as { id?: string, user?: string }
            return { clientId: q.id, userId: q.user }
          }
        }
      }
    }, () => {})
  })
}

/** A client of roomApp's /ws as clientId id (and user), over its port or injected when it does not listen. */
export const open = (app: FastifyInstance, id: string, user?: string): Promise<TestClient> =>
  (app.server.listening ? connect : inject)(app, `/ws?id=${id}${user === undefined ? '' : `&user=${user}`}`)

/** Waits until predicate() is true, polling every few ms, at most timeoutMs. */
export async function until (predicate: () => boolean | Promise<boolean>, timeoutMs = 2000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!await predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 5))
  }
}

export function once<T extends unknown[]> (emitter: { once (event: string, fn: (...args: T) => void): unknown }, event: string): Promise<T> {
  return new Promise(resolve => emitter.once(event, (...args: T) => resolve(args)))
}
