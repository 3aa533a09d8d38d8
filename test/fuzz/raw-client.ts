import net from 'node:net'
import { createHash, randomBytes } from 'node:crypto'

/*
 * RFC 6455 framing by hand, over a plain TCP socket: the client side of a WebSocket
 * that can send anything at all (bad opcodes, reserved bits, unmasked frames, lies about
 * lengths), and reads the server's frames as they come.
 */

export const OP = { CONT: 0, TEXT: 1, BINARY: 2, CLOSE: 8, PING: 9, PONG: 10 } as const

export interface FrameSpec {
  fin?: boolean
  /** The three reserved bits, 0-7 (RSV1 = 4). */
  rsv?: number
  opcode: number
  payload?: Buffer
  /** Default true: clients must mask. */
  masked?: boolean
  maskKey?: Buffer
  /** Force a length encoding: 7, 16 or 64 bits (default: the shortest). */
  lengthBits?: 7 | 16 | 64
  /** Declare this length instead of the payload's real one. */
  declaredLength?: number
}

/** One frame's bytes. */
export function encodeFrame (spec: FrameSpec): Buffer {
  const payload = spec.payload ?? Buffer.alloc(0)
  const length = spec.declaredLength ?? payload.length
  const masked = spec.masked ?? true
  const bits = spec.lengthBits ?? (length < 126 ? 7 : length < 0x10000 ? 16 : 64)
  const head = Buffer.alloc(2 + (bits === 16 ? 2 : bits === 64 ? 8 : 0) + (masked ? 4 : 0))
  head[0] = ((spec.fin ?? true) ? 0x80 : 0) | ((spec.rsv ?? 0) & 7) << 4 | (spec.opcode & 0x0f)
  let at = 2
  if (bits === 7) {
    head[1] = length & 0x7f
  } else if (bits === 16) {
    head[1] = 126
    head.writeUInt16BE(length & 0xffff, 2)
    at = 4
  } else {
    head[1] = 127
    head.writeUInt32BE(Math.floor(length / 0x1_0000_0000) >>> 0, 2)
    head.writeUInt32BE(length >>> 0, 6)
    at = 10
  }
  if (!masked) return Buffer.concat([head, payload])
  head[1] |= 0x80
  const key = spec.maskKey ?? randomBytes(4)
  key.copy(head, at, 0, 4)
  const body = Buffer.allocUnsafe(payload.length)
  for (let i = 0; i < payload.length; i++) body[i] = payload[i] ^ key[i & 3]
  return Buffer.concat([head, body])
}

export function closePayload (code: number, reason: Buffer | string = ''): Buffer {
  const r = typeof reason === 'string' ? Buffer.from(reason) : reason
  const out = Buffer.alloc(2 + r.length)
  out.writeUInt16BE(code, 0)
  r.copy(out, 2)
  return out
}

export interface ServerFrame {
  opcode: number
  payload: Buffer
  fin: boolean
  rsv1: boolean
  /** How many bytes the client had written when the frame arrived. */
  written: number
}

export interface UpgradeOptions {
  localAddress?: string
  /** Extra or replacing header lines, sent as they are. */
  headers?: Record<string, string>
  timeoutMs?: number
}

/** What the server said to an HTTP request that did not become a WebSocket. */
export class Refused extends Error {
  constructor (readonly status: number, readonly head: string) {
    super(`HTTP ${status}`)
  }
}

/**
 * A raw WebSocket client. Server frames are parsed into `frames` (data) and `closeCode`
 * (from the close frame); pings are not answered unless asked, so the heartbeat sees
 * a peer that only does what the test says.
 */
export class RawClient {
  readonly socket: net.Socket
  readonly frames: ServerFrame[] = []
  /** The code of the server's close frame (1005 for an empty one); undefined until one came. */
  closeCode: number | undefined = undefined
  closeReason = ''
  pings = 0
  readonly ended: Promise<void>
  /** The server's answer to the upgrade (status line and headers). */
  readonly head: string
  answerPings = false
  /** Bytes handed to the socket so far. */
  written = 0
  #buffer: Buffer = Buffer.alloc(0)
  #waiters: Array<() => void> = []

  private constructor (socket: net.Socket, head: string, rest: Buffer) {
    this.socket = socket
    this.head = head
    this.ended = new Promise(resolve => socket.once('close', () => { resolve(); this.#wake() }))
    socket.on('data', chunk => this.#read(chunk))
    if (rest.length > 0) this.#read(rest)
  }

  /** Connects and completes the opening handshake; rejects with `Refused` on any other status. */
  static async open (port: number, path: string, options: UpgradeOptions = {}): Promise<RawClient> {
    const key = randomBytes(16).toString('base64')
    const headers: Record<string, string> = {
      Host: `127.0.0.1:${port}`,
      Upgrade: 'websocket',
      Connection: 'Upgrade',
      'Sec-WebSocket-Key': key,
      'Sec-WebSocket-Version': '13',
      ...options.headers
    }
    const request = `GET ${path} HTTP/1.1\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`
    const { socket, status, head, rest } = await exchange(port, Buffer.from(request, 'latin1'), options)
    if (status !== 101) {
      socket.destroy()
      throw new Refused(status, head)
    }
    const accept = createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64')
    if (!head.toLowerCase().includes(`sec-websocket-accept: ${accept.toLowerCase()}`)) {
      socket.destroy()
      throw new Error('bad Sec-WebSocket-Accept')
    }
    return new RawClient(socket, head, rest)
  }

  get closed (): boolean {
    return this.socket.destroyed
  }

  write (bytes: Buffer): void {
    if (!this.socket.destroyed && this.socket.writable) {
      this.written += bytes.length
      this.socket.write(bytes)
    }
  }

  send (spec: FrameSpec): void {
    this.write(encodeFrame(spec))
  }

  /** Data frames whose text is not matched by `skip`. */
  texts (skip?: RegExp): string[] {
    const out: string[] = []
    for (const f of this.frames) {
      const text = f.opcode === OP.BINARY ? `<binary ${f.payload.length}>` : f.payload.toString()
      if (skip === undefined || !skip.test(text)) out.push(text)
    }
    return out
  }

  /** Resolves when predicate() holds (checked on each frame and at the end), false after timeoutMs. */
  async until (predicate: () => boolean, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs
    while (!predicate()) {
      const left = deadline - Date.now()
      if (left <= 0 || (this.closed && this.#buffer.length === 0 && !predicate())) return predicate()
      await new Promise<void>(resolve => {
        const timer = setTimeout(resolve, Math.min(left, 50))
        this.#waiters.push(() => { clearTimeout(timer); resolve() })
      })
    }
    return true
  }

  destroy (): void {
    this.socket.destroy()
  }

  #wake (): void {
    for (const w of this.#waiters.splice(0)) w()
  }

  #read (chunk: Buffer): void {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk])
    for (;;) {
      const b = this.#buffer
      if (b.length < 2) break
      let length = b[1] & 0x7f
      let at = 2
      if (length === 126) {
        if (b.length < 4) break
        length = b.readUInt16BE(2)
        at = 4
      } else if (length === 127) {
        if (b.length < 10) break
        length = b.readUInt32BE(2) * 0x1_0000_0000 + b.readUInt32BE(6)
        at = 10
      }
      if (b.length < at + length) break
      const opcode = b[0] & 0x0f
      const payload = b.subarray(at, at + length)
      this.#buffer = b.subarray(at + length)
      if (opcode === OP.CLOSE) {
        if (this.closeCode === undefined) {
          this.closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005
          this.closeReason = payload.subarray(2).toString()
        }
      } else if (opcode === OP.PING) {
        this.pings++
        if (this.answerPings) this.send({ opcode: OP.PONG, payload: Buffer.from(payload) })
      } else if (opcode !== OP.PONG) {
        this.frames.push({ opcode, payload: Buffer.from(payload), fin: (b[0] & 0x80) !== 0, rsv1: (b[0] & 0x40) !== 0, written: this.written })
      }
    }
    this.#wake()
  }
}

/**
 * Writes `request` to a new connection and reads the response head. Resolves with the
 * status (0 when the server closed without answering) and whatever came after the head.
 */
export function exchange (port: number, request: Buffer, options: UpgradeOptions = {}): Promise<{ socket: net.Socket, status: number, head: string, rest: Buffer }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress: options.localAddress })
    let got = Buffer.alloc(0)
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`no answer to the request within ${options.timeoutMs ?? 3000} ms`))
    }, options.timeoutMs ?? 3000)
    let settled = false
    // the caller attaches its own 'data' listener before any more I/O can come
    const done = (status: number, head: string, rest: Buffer): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.removeAllListeners('data')
      resolve({ socket, status, head, rest })
    }
    socket.on('error', () => {})
    socket.on('data', chunk => {
      got = Buffer.concat([got, chunk])
      const end = got.indexOf('\r\n\r\n')
      if (end === -1) return
      const head = got.subarray(0, end).toString('latin1')
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0)
      done(status, head, got.subarray(end + 4))
    })
    socket.once('close', () => done(0, got.toString('latin1'), Buffer.alloc(0)))
    socket.once('connect', () => socket.write(request))
  })
}
