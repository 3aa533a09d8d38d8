import { createServer, connect, type Server, type Socket } from 'node:net'

/*
 * A TCP proxy in front of a redis-server that loses a reply, as a dropped connection does:
 * armed with a pattern, it lets the command holding it reach Redis and, once Redis answers,
 * drops the answer and cuts both connections (after a short settle, so that everything the
 * client sent with it has run too). ioredis then reconnects through the proxy, and sends the
 * commands that got no reply again (`autoResendUnfulfilledCommands`): Redis runs them twice.
 * One cut per arming; `cuts` counts them, so that a test can prove its cut happened.
 */

/** How long after Redis' first answer byte the connection is cut, in ms. */
const SETTLE = 20

export class ReplyCutter {
  port = 0
  /** The connections cut so far. */
  cuts = 0
  readonly #target: number
  readonly #server: Server
  readonly #sockets = new Set<Socket>()
  #armed: Buffer | undefined = undefined

  constructor (target: number) {
    this.#target = target
    this.#server = createServer(client => this.#pipe(client))
  }

  get url (): string {
    return `redis://127.0.0.1:${this.port}`
  }

  async start (): Promise<this> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject)
      this.#server.listen(0, '127.0.0.1', () => resolve())
    })
    this.port = (this.#server.address() as { port: number }).port
    return this
  }

  /** Cuts the next connection that sends `pattern` (bytes of a command: a key, a script), once its reply comes. */
  arm (pattern: string): void {
    this.#armed = Buffer.from(pattern)
  }

  #pipe (client: Socket): void {
    const upstream = connect(this.#target, '127.0.0.1')
    for (const socket of [client, upstream]) {
      this.#sockets.add(socket)
      // a cut connection's peer may still write: its errors end here
      socket.on('error', () => {})
      socket.once('close', () => this.#sockets.delete(socket))
    }
    client.once('close', () => upstream.destroy())
    upstream.once('close', () => client.destroy())
    // the end of what came before, in case the pattern straddles two chunks
    let tail = Buffer.alloc(0)
    let cutting = false
    let cut: NodeJS.Timeout | undefined
    client.on('data', (chunk: Buffer) => {
      const armed = this.#armed
      if (!cutting && armed !== undefined) {
        const seen = Buffer.concat([tail, chunk])
        if (seen.includes(armed)) {
          cutting = true
          this.#armed = undefined
        } else {
          tail = seen.subarray(Math.max(0, seen.length - armed.length + 1))
        }
      }
      upstream.write(chunk)
    })
    upstream.on('data', (chunk: Buffer) => {
      if (!cutting) {
        client.write(chunk)
        return
      }
      // the command ran: its answer (and what follows) is lost with the connection
      if (cut !== undefined) return
      cut = setTimeout(() => {
        this.cuts++
        client.destroy()
        upstream.destroy()
      }, SETTLE)
    })
    upstream.once('close', () => clearTimeout(cut))
  }

  async close (): Promise<void> {
    for (const socket of this.#sockets) socket.destroy()
    await new Promise(resolve => this.#server.close(resolve))
  }
}

/** A reply cutter in front of the Redis on `port`, closed when the test is done. */
export async function startReplyCutter (t: { teardown (fn: () => unknown): void }, port: number): Promise<ReplyCutter> {
  const cutter = await new ReplyCutter(port).start()
  t.teardown(() => cutter.close())
  return cutter
}
