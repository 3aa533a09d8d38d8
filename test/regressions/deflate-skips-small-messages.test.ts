import { test } from 'tap'
import { constants, inflateRawSync } from 'node:zlib'
import type { AddressInfo } from 'node:net'
import type { WebSocket } from 'ws'
import { buildApp, until } from '../helpers.ts'
import { RawClient, type ServerFrame } from '../fuzz/raw-client.ts'

/*
 * With `compression: 'deflate'`, messages under 1 KiB go out uncompressed (RSV1 clear),
 * also when the client keeps its context (no `server_no_context_takeover`), where ws
 * itself would compress every message. Read on the wire by a raw client.
 */

const TAIL = Buffer.from([0, 0, 0xff, 0xff])

/**
 * The texts of message frames; compressed ones (RSV1) are inflated as one stream, the way a
 * client that keeps its context does (a message may refer to the ones before it).
 */
function textsOf (frames: ServerFrame[]): string[] {
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
    const client = await RawClient.open((server.server.address() as AddressInfo).port, '/ws', { headers: { 'Sec-WebSocket-Extensions': offer } })
    t.match(/sec-websocket-extensions: (.*)/i.exec(client.head)?.[1], /^permessage-deflate/, 'deflate negotiated')
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
