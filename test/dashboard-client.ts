import type { FastifyInstance } from 'fastify'
import type { AddressInfo } from 'node:net'
import WebSocket from 'ws'
import { TestClient } from './helpers.ts'

/*
 * A dashboard as the page is one, without the page: a ticket from `<path>/ticket`, then the
 * live socket with it, its frames sorted by type.
 */

export function baseOf (app: FastifyInstance): string {
  const { port } = app.server.address() as AddressInfo
  return `http://127.0.0.1:${port}`
}

export async function ticket (app: FastifyInstance, path = '/ws-admin', headers: Record<string, string> = {}): Promise<string> {
  const answer = await fetch(`${baseOf(app)}${path}/ticket`, { headers })
  if (answer.status !== 200) throw new Error(`ticket refused: ${answer.status}`)
  return ((await answer.json()) as { ticket: string }).ticket
}

export interface Frame { type: string, [key: string]: any }

export class DashboardClient {
  readonly client: TestClient
  #frames: Frame[] = []
  #nextId = 1

  private constructor (client: TestClient) {
    this.client = client
  }

  static async open (app: FastifyInstance, path = '/ws-admin', headers: Record<string, string> = {}): Promise<DashboardClient> {
    const t = await ticket(app, path, headers)
    return new DashboardClient(await openLive(app, path, ['wss-dashboard', `ticket.${t}`], headers))
  }

  /** The next frame of this type (frames of other types met on the way are kept). */
  async next (type: string, timeoutMs = 3000, where: (f: Frame) => boolean = () => true): Promise<Frame> {
    const kept = this.#frames.findIndex(f => f.type === type && where(f))
    if (kept !== -1) return this.#frames.splice(kept, 1)[0]
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const frame = await this.client.json<Frame>(Math.max(1, deadline - Date.now()))
      if (frame.type === type && where(frame)) return frame
      this.#frames.push(frame)
      if (this.#frames.length > 200) this.#frames.shift()
    }
  }

  /** Forgets what arrived so far. */
  skip (): void {
    this.#frames = []
    this.client.drain()
  }

  query (q: Record<string, unknown>): void {
    this.client.send({ type: 'query', ...q })
  }

  /** Sends an action and waits for its result. */
  async act (action: Record<string, unknown>): Promise<Frame> {
    const id = this.#nextId++
    this.client.send({ type: 'action', id, ...action })
    return await this.next('result', 3000, f => f.id === id)
  }

  async close (): Promise<void> {
    await this.client.close()
  }
}

/** The live socket with these subprotocols; rejects with the HTTP status when refused. */
export function openLive (app: FastifyInstance, path: string, protocols: string[], headers: Record<string, string> = {}): Promise<TestClient> {
  const ws = new WebSocket(`${baseOf(app).replace('http', 'ws')}${path}/live`, protocols, { headers })
  const client = new TestClient(ws)
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(client))
    ws.once('unexpected-response', (_req, res) => {
      reject(Object.assign(new Error(`Unexpected server response: ${String(res.statusCode)}`), { statusCode: res.statusCode }))
      ws.terminate()
    })
    ws.once('error', reject)
  })
}
