import { randomBytes } from 'node:crypto'

/*
 * The dashboard's socket opens with a ticket: a random string the page got from
 * `<path>/ticket` (a request `authorize` let in), good once and for a few seconds. So the
 * socket is as authorized as the page, whatever the app's auth rides on (a cookie, a
 * header the browser cannot put on a WebSocket), and another site's page cannot open it
 * with the user's cookies (it cannot read the ticket). It travels in the socket's
 * subprotocol list, never in a URL that a log line would keep.
 */

const TTL = 30_000
/** Tickets outstanding at most: more evicts the oldest. */
const MAX = 1000

export class Tickets {
  #tickets = new Map<string, { actor: string, expires: number }>()

  issue (actor: string, now = Date.now()): string {
    // expired ones go first (the map is in issue order, so they are at its head)
    for (const [ticket, { expires }] of this.#tickets) {
      if (expires > now && this.#tickets.size < MAX) break
      this.#tickets.delete(ticket)
    }
    const ticket = randomBytes(24).toString('base64url')
    this.#tickets.set(ticket, { actor, expires: now + TTL })
    return ticket
  }

  /** The actor the ticket was issued to, once; undefined when unknown, used or expired. */
  take (ticket: string, now = Date.now()): string | undefined {
    const found = this.#tickets.get(ticket)
    if (found === undefined) return undefined
    this.#tickets.delete(ticket)
    return found.expires > now ? found.actor : undefined
  }

  get size (): number {
    return this.#tickets.size
  }
}

/** The ticket among a socket's requested subprotocols (`ticket.<ticket>`). */
export function ticketOf (protocols: string | undefined): string | undefined {
  if (protocols === undefined) return undefined
  for (const part of protocols.split(',')) {
    const name = part.trim()
    if (name.startsWith('ticket.')) return name.slice(7)
  }
  return undefined
}
