import type { ManagedConnection } from './connection.ts'

/**
 * Who is connected: clientId → connection, and userId → that user's connections.
 * Removal is by identity, so the late close of a replaced socket never removes
 * the connection that replaced it.
 */
export class Registry {
  #clients = new Map<string, ManagedConnection>()
  #users = new Map<string, Set<ManagedConnection>>()
  #ips = new Map<string, number>()

  get size (): number {
    return this.#clients.size
  }

  get userCount (): number {
    return this.#users.size
  }

  get (clientId: string): ManagedConnection | undefined {
    return this.#clients.get(clientId)
  }

  /** Adds a connection; the manager has ended any connection with the same clientId first. */
  add (conn: ManagedConnection): void {
    this.#clients.set(conn.id, conn)
    if (conn.ip !== undefined) this.#ips.set(conn.ip, (this.#ips.get(conn.ip) ?? 0) + 1)
    if (conn.userId !== undefined) {
      let set = this.#users.get(conn.userId)
      if (set === undefined) {
        set = new Set()
        this.#users.set(conn.userId, set)
      }
      set.add(conn)
    }
  }

  /** Removes this very connection; false if it was not (or no longer) registered. */
  remove (conn: ManagedConnection): boolean {
    if (this.#clients.get(conn.id) !== conn) return false
    this.#clients.delete(conn.id)
    if (conn.ip !== undefined) {
      const left = this.#ips.get(conn.ip)! - 1
      if (left === 0) this.#ips.delete(conn.ip)
      else this.#ips.set(conn.ip, left)
    }
    if (conn.userId !== undefined) {
      // a registered connection with a userId is always in its user's set
      const set = this.#users.get(conn.userId)!
      set.delete(conn)
      if (set.size === 0) this.#users.delete(conn.userId)
    }
    return true
  }

  /** The user's connections; an empty set when the user has none. */
  userConnections (userId: string): ReadonlySet<ManagedConnection> {
    return this.#users.get(userId) ?? EMPTY
  }

  /** Connections from one IP address. */
  ipCount (ip: string): number {
    return this.#ips.get(ip) ?? 0
  }

  clientIds (): IterableIterator<string> {
    return this.#clients.keys()
  }

  userIds (): IterableIterator<string> {
    return this.#users.keys()
  }

  connections (): IterableIterator<ManagedConnection> {
    return this.#clients.values()
  }
}

const EMPTY: ReadonlySet<ManagedConnection> = new Set()
