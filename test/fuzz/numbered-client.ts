import WebSocket from 'ws'

/*
 * A well-behaved protocol 2 client for the fuzz run's bystander: on a typed, replaying
 * resume route it sends numbered requests, keeps every frame until an ack covers it,
 * answers the server's requests, drops its connection now and then, resumes with its
 * count and sends again what the welcome says the server did not have. It checks that
 * every request is answered exactly once, the broadcast sequence has no hole and no
 * repeat, and every ack (and welcome) is cumulative and never beyond what it sent.
 */

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

interface Frame { type: string, token?: string, offset?: number, v?: number, resumed?: boolean, resumeFailed?: string, received?: number, data?: Inner }
interface Inner { seq?: number, type?: string, id?: string, data?: unknown }

export class NumberedClient {
  ws!: WebSocket
  /** Counted frames sent in the session, and those not acknowledged yet. */
  sent = 0
  kept: Array<{ n: number, text: string }> = []
  acked = 0
  offset = 0
  token = ''
  last = 0
  resumes = 0
  /** The server's requests answered, and the id of the last one. */
  served = 0
  lastRequestId = 's:0'
  problems: string[] = []
  pending = new Map<string, number>()
  answered = 0
  #next = 1
  #open = false
  #url: string

  constructor (url: string) {
    this.#url = url
  }

  async connect (resume: boolean): Promise<void> {
    const url = resume ? `${this.#url}&resume=${encodeURIComponent(this.token)}&offset=${this.offset}&sent=${this.sent}` : this.#url
    const ws = this.ws = new WebSocket(url)
    const welcomed = new Promise<void>((resolve, reject) => {
      ws.once('close', code => reject(new Error(`closed with ${code} before the welcome`)))
      ws.on('message', data => {
        const frame = JSON.parse(data.toString()) as Frame
        if (frame.type === 'welcome') {
          this.#welcome(frame, resume)
          resolve()
        } else {
          this.#frame(frame, data.toString())
        }
      })
    })
    ws.on('error', err => this.problems.push(`socket error ${err.message}`))
    await welcomed
  }

  #welcome (frame: Frame, resume: boolean): void {
    this.token = frame.token!
    this.offset = frame.offset!
    const received = frame.received ?? -1
    if (frame.v !== 2) this.problems.push(`welcome v ${String(frame.v)}`)
    if (resume && frame.resumed !== true) this.problems.push(`resume failed: ${String(frame.resumeFailed)}`)
    // one instance that never crashed: the server never forgets what it acknowledged
    if (resume ? received < this.acked || received > this.sent : received !== 0) this.problems.push(`welcome received ${received}, acked ${this.acked}, sent ${this.sent}`)
    this.#ack(received)
    this.#open = true
    for (const k of this.kept) this.ws.send(k.text)
  }

  #ack (n: number): void {
    if (n < this.acked || n > this.sent) this.problems.push(`ack ${n} after ${this.acked}, ${this.sent} sent`)
    this.acked = n
    this.kept = this.kept.filter(k => k.n > n)
  }

  #frame (frame: Frame, text: string): void {
    if (frame.type === 'ack') return this.#ack(frame.received!)
    if (frame.type !== 'message') {
      this.problems.push(`unexpected frame ${text.slice(0, 200)}`)
      return
    }
    if (frame.offset !== undefined) this.offset = frame.offset
    const inner = frame.data ?? {}
    if (inner.seq !== undefined) {
      if (this.last !== 0 && inner.seq !== this.last + 1) this.problems.push(`seq ${inner.seq} after ${this.last}`)
      this.last = inner.seq
    } else if (inner.type === 'add.result' && this.pending.get(inner.id!) === inner.data) {
      this.pending.delete(inner.id!)
      this.answered++
    } else if (inner.type === 'request') {
      this.lastRequestId = inner.id!
      this.served++
      this.send(JSON.stringify({ type: 'response', id: inner.id, data: (inner.data as { n: number }).n * 2 }))
    } else {
      this.problems.push(`unexpected frame ${text.slice(0, 200)}`)
    }
  }

  /** Counts and keeps the frame; sends it now if connected (else the resume does). */
  send (text: string): void {
    this.kept.push({ n: ++this.sent, text })
    if (this.#open) this.ws.send(text)
  }

  request (): void {
    const n = this.#next++
    this.pending.set(`c${n}`, n + 1)
    this.send(JSON.stringify({ type: 'add', id: `c${n}`, data: { a: n, b: 1 } }))
  }

  /** Drops the connection without a close frame, waits, and resumes. */
  async bounce (awayMs: number): Promise<void> {
    this.#open = false
    const closed = new Promise(resolve => this.ws.once('close', resolve))
    this.ws.terminate()
    await closed
    await sleep(awayMs)
    this.resumes++
    await this.connect(true)
  }
}
