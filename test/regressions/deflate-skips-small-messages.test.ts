import { test } from 'tap'
import { connect as netConnect, type Socket } from 'node:net'
import { randomBytes } from 'node:crypto'
import { constants, inflateRawSync } from 'node:zlib'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import type { WebSocket } from 'ws'
import { buildApp, until } from '../helpers.ts'

/*
 * With `compression: 'deflate'`, messages under 1 KiB go out uncompressed (RSV1 clear),
 * also when the client keeps its context (no `server_no_context_takeover`), where ws
 * itself would compress every message. Read on the wire by a raw client.
 */

interface Frame { fin: boolean, rsv1: boolean, opcode: number, payload: Buffer }

/** A raw WebSocket client: the handshake by hand, then the server's frames as they come. */
class RawClient {
  readonly frames: Frame[] = []
  readonly extensions: string
  #socket: Socket
  #buffer = Buffer.alloc(0)

  private constructor (socket: Socket, extensions: string, rest: Buffer) {
    this.#socket = socket
    this.extensions = extensions
    socket.on('data', chunk => this.#read(chunk))
    this.#read(rest)
  }

  static async open (server: FastifyInstance, path: string, extensions: string): Promise<RawClient> {
    const { port } = server.server.address() as AddressInfo
    const socket = netConnect(port, '127.0.0.1')
    await new Promise(resolve => socket.once('connect', resolve))
    socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: ${extensions}\r\n\r\n`)
    let head = Buffer.alloc(0)
    while (!head.includes('\r\n\r\n')) {
      head = Buffer.concat([head, await new Promise<Buffer>(resolve => socket.once('data', resolve))])
    }
    const end = head.indexOf('\r\n\r\n') + 4
    const response = head.subarray(0, end).toString()
    if (!response.startsWith('HTTP/1.1 101')) throw new Error(response)
    return new RawClient(socket, /sec-websocket-extensions: (.*)\r\n/i.exec(response)?.[1] ?? '', head.subarray(end))
  }

  #read (chunk: Buffer): void {
    this.#buffer = Buffer.concat([this.#buffer, chunk])
    for (;;) {
      const b = this.#buffer
      if (b.length < 2) return
      let length = b[1] & 0x7f
      let offset = 2
      if (length === 126) {
        if (b.length < 4) return
        length = b.readUInt16BE(2)
        offset = 4
      } else if (length === 127) {
        if (b.length < 10) return
        length = Number(b.readBigUInt64BE(2))
        offset = 10
      }
      if (b.length < offset + length) return
      this.frames.push({ fin: (b[0] & 0x80) !== 0, rsv1: (b[0] & 0x40) !== 0, opcode: b[0] & 0x0f, payload: b.subarray(offset, offset + length) })
      this.#buffer = b.subarray(offset + length)
    }
  }

  destroy (): void {
    this.#socket.destroy()
  }
}

const TAIL = Buffer.from([0, 0, 0xff, 0xff])

/**
 * The texts of message frames; compressed ones (RSV1) are inflated as one stream, the way a
 * client that keeps its context does (a message may refer to the ones before it).
 */
function textsOf (frames: Frame[]): string[] {
  const stream: Buffer[] = []
  let before = 0
  return frames.map(frame => {
    if (!frame.rsv1) return frame.payload.toString()
    stream.push(frame.payload, TAIL)
    const all = inflateRawSync(Buffer.concat(stream), { finishFlush: constants.Z_SYNC_FLUSH })
    const text = all.subarray(before).toString()
    before = all.length
    return text
  })
}

for (const offer of ['permessage-deflate', 'permessage-deflate; server_no_context_takeover']) {
  test(`deflate with "${offer}": plugin messages under 1 KiB carry no RSV1, larger ones are compressed`, async (t) => {
    const sockets: WebSocket[] = []
    const server = await buildApp(t, { compression: 'deflate', heartbeat: { enabled: false } }, s => {
      s.get('/ws', { websocket: true }, socket => { sockets.push(socket) })
    })
    const client = await RawClient.open(server, '/ws', offer)
    t.match(client.extensions, /^permessage-deflate/, 'deflate negotiated')
    await until(() => server.wsManager.getConnectionCount() === 1)
    const id = server.wsManager.getActiveConnections()[0]
    const big = 'a'.repeat(4096)
    await server.wsManager.broadcast(big)
    await server.wsManager.broadcast('small')
    server.wsManager.send(id, Buffer.from('bin'))
    await server.wsManager.broadcast({ n: 1 })
    server.wsManager.send(id, 'b'.repeat(1024))
    await until(() => client.frames.length === 5, 2000, 'five frames')
    t.same(client.frames.map(f => [f.fin, f.rsv1, f.opcode]), [
      [true, true, 1], [true, false, 1], [true, false, 2], [true, false, 1], [true, true, 1]
    ], 'RSV1 only on the messages of 1 KiB and more')
    t.same(textsOf(client.frames), [big, 'small', 'bin', '{"n":1}', 'b'.repeat(1024)])
    client.destroy()
    await until(() => server.wsManager.getConnectionCount() === 0)
  })
}
