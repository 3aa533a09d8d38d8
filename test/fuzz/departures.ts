import type { FastifyInstance } from 'fastify'
import type { DisconnectInfo } from '../../plugin.ts'

/** Disconnect events by clientId, to wait for and to check the reason of. */
export class Departures {
  readonly seen = new Map<string, DisconnectInfo>()
  #waiters = new Map<string, () => void>()

  constructor (app: FastifyInstance) {
    app.wsManager.on('disconnect', (conn, info) => {
      this.seen.set(conn.id, info)
      this.#waiters.get(conn.id)?.()
    })
  }

  async of (clientId: string, timeoutMs = 3000): Promise<DisconnectInfo | undefined> {
    if (this.seen.has(clientId)) return this.seen.get(clientId)
    await new Promise<void>(resolve => {
      const timer = setTimeout(resolve, timeoutMs)
      this.#waiters.set(clientId, () => { clearTimeout(timer); resolve() })
    })
    this.#waiters.delete(clientId)
    return this.seen.get(clientId)
  }

  /** Forgets a departure: the clientId comes back (a resume). */
  forget (clientId: string): void {
    this.seen.delete(clientId)
  }
}
