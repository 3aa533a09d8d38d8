import type { Socket } from 'node:net'
import * as ws from 'ws'
import type { WebSocket } from 'ws'

/*
 * Pre-framed writes. A message sent to many sockets is framed once (header and payload in
 * one Buffer) and written straight to each socket's net.Socket, the way engine.io sends its
 * pre-encoded packets, instead of `socket.send()` framing it again for every recipient.
 * Writes a socket gets in the same tick after its first are corked and go out together at
 * the end of the tick (one writev instead of one write syscall each), or as soon as
 * `CORK_LIMIT` bytes (or the caller's limit, its high-water mark) are waiting: held bytes
 * count in `bufferedAmount`, and holding more would make a fast client look slow.
 *
 * The frame is only valid when ws would write exactly those bytes: a server socket, with no
 * permessage-deflate (which may compress the message), whose sender is idle (not
 * compressing, nothing queued behind a compression, not in the middle of a fragmented
 * message). In every other case `canWriteFrame` says no and the caller uses
 * `socket.send()`. Bytes written here count in `socket.bufferedAmount` as ws's own do: ws
 * reads it from the net.Socket's write buffer.
 */

/** What the fast path reads of a ws WebSocket; when ws changes these, it is not taken. */
interface WsInternals {
  _isServer?: boolean
  _socket?: Socket | null
  _sender?: { _state: number, _queue: unknown[], _firstFragment: boolean }
  _extensions?: Record<string, unknown>
}

interface FrameOptions { fin: boolean, opcode: number, mask: boolean, readOnly: boolean, rsv1: boolean }

type FrameFn = (data: Buffer, options: FrameOptions) => Buffer[]

/** ws's own framing (`Sender.frame`), so the bytes are those `send()` would write. */
const frameOf: FrameFn | undefined = (ws as unknown as { Sender?: { frame?: FrameFn } }).Sender?.frame

/** Payloads up to this size are copied behind their header (one Buffer); bigger ones are written as header + payload. */
const COPY_LIMIT = 64 * 1024
/** Corked bytes beyond which a socket is uncorked before the end of the tick. */
const CORK_LIMIT = 64 * 1024
/** The sender's idle state (ws's `DEFAULT`). */
const IDLE = 0
const DEFLATE = 'permessage-deflate'

const TEXT_FRAME = { fin: true, opcode: 1, mask: false, readOnly: false, rsv1: false }
const BINARY_FRAME = { fin: true, opcode: 2, mask: false, readOnly: false, rsv1: false }

/** A message with the frame made for it on first need. */
export interface Frameable {
  readonly data: Buffer
  readonly binary: boolean
  /** @internal Its WebSocket frame (unmasked, uncompressed, final). */
  frame?: Buffer | Buffer[]
}

/** The whole frame of a message: made once, then the same bytes for every recipient. */
export function frame (message: Frameable): Buffer | Buffer[] {
  if (message.frame !== undefined) return message.frame
  const list = frameOf!(message.data, message.binary ? BINARY_FRAME : TEXT_FRAME)
  message.frame = list.length === 1 ? list[0] : message.data.length <= COPY_LIMIT ? Buffer.concat(list) : list
  return message.frame
}

/** True when `writeFrame` can write to this socket now. */
export function canWriteFrame (socket: WebSocket): boolean {
  const s = socket as WebSocket & WsInternals
  const sender = s._sender
  const raw = s._socket
  return frameOf !== undefined && s._isServer === true && raw != null && !raw.destroyed && sender !== undefined &&
    sender._state === IDLE && sender._queue.length === 0 && sender._firstFragment && s._extensions?.[DEFLATE] === undefined
}

const kWrittenIn = Symbol('wsStabilizer.writtenIn')
const kCorkedIn = Symbol('wsStabilizer.corkedIn')

/** The tick of a socket's last write and of its cork, kept on the ws object (the plugin's symbols already live there). */
type Tracked = WebSocket & WsInternals & { [kWrittenIn]?: number, [kCorkedIn]?: number }

/** Changes at the end of every tick in which something was written. */
let tick = 1
let flushScheduled = false
const corked: Socket[] = []

function endOfTick (): void {
  flushScheduled = false
  tick++
  for (let i = 0; i < corked.length; i++) corked[i].uncork()
  corked.length = 0
}

/**
 * Writes a message's frame to an open socket (see `canWriteFrame`): the first write of a
 * tick at once, later ones of the same tick corked until the end of the tick, or until
 * more than `limit` bytes (at most CORK_LIMIT) are held.
 */
export function writeFrame (socket: WebSocket, message: Frameable, limit: number): void {
  const tracked = socket as Tracked
  const raw = tracked._socket!
  if (!flushScheduled) {
    flushScheduled = true
    process.nextTick(endOfTick)
  }
  if (tracked[kWrittenIn] !== tick) {
    tracked[kWrittenIn] = tick
  } else if (tracked[kCorkedIn] !== tick) {
    tracked[kCorkedIn] = tick
    raw.cork()
    corked.push(raw)
  }
  const bytes = frame(message)
  if (Buffer.isBuffer(bytes)) {
    raw.write(bytes)
  } else {
    raw.cork()
    raw.write(bytes[0])
    raw.write(bytes[1])
    raw.uncork()
  }
  // held long enough: out now, and written at once for the rest of the tick (kCorkedIn stays)
  if (tracked[kCorkedIn] === tick && raw.writableCorked > 0 && raw.writableLength > (limit < CORK_LIMIT ? limit : CORK_LIMIT)) raw.uncork()
}
