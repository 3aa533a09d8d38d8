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
 * count in the socket's write buffer (`waitingBytes`), and holding more would make a fast
 * client look slow.
 *
 * The frame is only valid when ws would write exactly those bytes: a server socket, with no
 * permessage-deflate (which may compress the message), whose sender is idle (not
 * compressing, nothing queued behind a compression, not in the middle of a fragmented
 * message; the caller holds its messages while the app's fragment is open). In every other
 * case `canWriteFrame` says no and the caller uses `socket.send()`. Bytes written here wait
 * in the net.Socket's write buffer as ws's own do, so `waitingBytes` (and ws'
 * `bufferedAmount`) count them.
 *
 * This file is also the one place that reads ws's other internals: what waits on a socket
 * (`waitingBytes`, `compressingBytes`), whether the app has a fragmented message open
 * (`fragmentOpen`, `whenFragmentEnds`), and ws's deflate threshold (`sendOptions`).
 */

/** What the fast path reads of a ws WebSocket; when ws changes these, it is not taken. */
interface WsInternals {
  _isServer?: boolean
  _socket?: Socket | null
  _sender?: Sender
  _extensions?: Record<string, { _threshold?: number } | undefined>
}

/** The one way this file looks at a ws WebSocket's private fields. */
function internals (socket: WebSocket): WsInternals {
  return socket as WebSocket & WsInternals
}

/** What the fast path and the fragment watch read of ws's Sender. */
interface Sender {
  _state: number
  _queue: unknown[]
  _firstFragment: boolean
  _bufferedBytes: number
  send: (...args: unknown[]) => void
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
  const s = internals(socket)
  const sender = s._sender
  const raw = s._socket
  return frameOf !== undefined && s._isServer === true && raw != null && !raw.destroyed && sender !== undefined &&
    sender._state === IDLE && sender._queue.length === 0 && sender._firstFragment && s._extensions?.[DEFLATE] === undefined
}

const kWrittenIn = Symbol('wsStabilizer.writtenIn')
const kCorkedIn = Symbol('wsStabilizer.corkedIn')
const kDelayedIn = Symbol('wsStabilizer.delayedIn')

/**
 * The tick of a socket's last write and of its cork, and the delay window it is corked in,
 * kept on the ws object (the plugin's symbols already live there).
 */
type Tracked = WebSocket & WsInternals & { [kWrittenIn]?: number, [kCorkedIn]?: number, [kDelayedIn]?: number }

/**
 * This module's only state, one for the process (shared by every manager): the write tick,
 * which changes at the end of every tick in which something was written, whether its end is
 * scheduled, and the sockets corked in it.
 */
const ticks = { current: 1, endScheduled: false, corked: [] as Socket[] }

function endOfTick (): void {
  ticks.endScheduled = false
  ticks.current++
  const corked = ticks.corked
  for (let i = 0; i < corked.length; i++) corked[i].uncork()
  corked.length = 0
}

/**
 * Write coalescing (`flush.delay`): a socket written to is corked until the end of a window
 * of `delay` ms, so that everything it gets meanwhile leaves in one writev. One timer per
 * delay value for every socket (none per connection); a window opens with the first write
 * after the last one closed. The sockets corked in it are uncorked when it closes, or before,
 * one by one, when more than their limit is held (as within a tick).
 */
interface Window {
  /** Unique per window, so that a socket knows whether it is corked in the open one. */
  id: number
  timer: NodeJS.Timeout | undefined
  readonly delay: number
  readonly corked: Socket[]
}

const windows = new Map<number, Window>()
let lastWindow = 0

function closeWindow (window: Window): void {
  window.timer = undefined
  const corked = window.corked
  for (let i = 0; i < corked.length; i++) corked[i].uncork()
  corked.length = 0
}

/**
 * Corks the socket under the current window of `delay` ms (opening one if none is open),
 * unless it is corked in it already. Whatever reaches the socket until the window closes
 * (frames, `socket.send()`, pings, a close frame) leaves together, in order.
 */
export function coalesce (socket: WebSocket, delay: number): void {
  const tracked = socket as Tracked
  // an open socket (the caller checked) has its net.Socket
  const raw = tracked._socket!
  let window = windows.get(delay)
  if (window === undefined) windows.set(delay, window = { id: 0, timer: undefined, delay, corked: [] })
  if (window.timer === undefined) {
    window.id = ++lastWindow
    window.timer = setTimeout(closeWindow, delay, window)
  }
  if (tracked[kDelayedIn] === window.id) return
  tracked[kDelayedIn] = window.id
  raw.cork()
  window.corked.push(raw)
}

/** Closes every open window now: what they hold goes out (at shutdown, before the close frames). */
export function flushWindows (): void {
  for (const window of windows.values()) {
    if (window.timer === undefined) continue
    clearTimeout(window.timer)
    closeWindow(window)
  }
}

/**
 * Writes a message's frame to an open socket (see `canWriteFrame`): the first write of a
 * tick at once, later ones of the same tick corked until the end of the tick, or until
 * more than `limit` bytes (at most CORK_LIMIT) are held. With a `delay` (ms), the socket is
 * corked for the window instead (see `coalesce`), within the same limit.
 */
export function writeFrame (socket: WebSocket, message: Frameable, limit: number, delay = 0): void {
  const tracked = socket as Tracked
  const raw = tracked._socket!
  if (delay > 0) {
    coalesce(socket, delay)
    put(raw, frame(message))
    if (raw.writableCorked > 0 && raw.writableLength > (limit < CORK_LIMIT ? limit : CORK_LIMIT)) raw.uncork()
    return
  }
  const tick = ticks.current
  if (!ticks.endScheduled) {
    ticks.endScheduled = true
    process.nextTick(endOfTick)
  }
  if (tracked[kWrittenIn] !== tick) {
    tracked[kWrittenIn] = tick
  } else if (tracked[kCorkedIn] !== tick) {
    tracked[kCorkedIn] = tick
    raw.cork()
    ticks.corked.push(raw)
  }
  put(raw, frame(message))
  // held long enough: out now, and written at once for the rest of the tick (kCorkedIn stays)
  if (tracked[kCorkedIn] === tick && raw.writableCorked > 0 && raw.writableLength > (limit < CORK_LIMIT ? limit : CORK_LIMIT)) raw.uncork()
}

function put (raw: Socket, bytes: Buffer | Buffer[]): void {
  if (Buffer.isBuffer(bytes)) {
    raw.write(bytes)
  } else {
    raw.cork()
    raw.write(bytes[0])
    raw.write(bytes[1])
    raw.uncork()
  }
}

/**
 * Bytes waiting on the socket itself: in its net.Socket's write buffer (corked ones too),
 * what a client that stops reading fills. Unlike ws's `bufferedAmount`, it leaves out
 * the messages waiting for permessage-deflate (see `compressingBytes`).
 */
export function waitingBytes (socket: WebSocket): number {
  // set once the socket opened, never unset; only open sockets are judged
  return internals(socket)._socket!.writableLength
}

/**
 * Bytes of messages queued in ws's sender, not yet framed: waiting for permessage-deflate
 * (ws compresses one message of a socket at a time, on zlib's thread pool) or behind one.
 * It grows with the server's compression work, not with how fast the client reads.
 */
export function compressingBytes (socket: WebSocket): number {
  return internals(socket)._sender!._bufferedBytes
}

/** True while the app has a fragmented message open on the socket (`send(…, { fin: false })`). */
export function fragmentOpen (socket: WebSocket): boolean {
  return internals(socket)._sender?._firstFragment === false
}

/**
 * Calls `ended` once the app's open fragmented message has ended: right after the send
 * of its last fragment (`fin: true`) returns. ws's `send` is wrapped on this socket's
 * sender until then, and only while a fragment is open. `stop()` unwraps it without a call.
 */
export function whenFragmentEnds (socket: WebSocket, ended: () => void): () => void {
  const sender = internals(socket)._sender!
  const send = sender.send
  const stop = (): void => { sender.send = send }
  sender.send = function (this: Sender, ...args: unknown[]): void {
    send.apply(this, args)
    if (!this._firstFragment) return
    stop()
    ended()
  }
  return stop
}

const TEXT = Object.freeze({ binary: false })
const BINARY = Object.freeze({ binary: true })
const TEXT_PLAIN = Object.freeze({ binary: false, compress: false })
const BINARY_PLAIN = Object.freeze({ binary: true, compress: false })

/**
 * The options of `socket.send()` for a message: with permessage-deflate negotiated,
 * messages under its threshold are sent uncompressed (ws itself applies the threshold
 * only without context takeover, and compresses every message otherwise).
 */
export function sendOptions (socket: WebSocket, message: Frameable): object {
  const deflate = internals(socket)._extensions?.[DEFLATE]
  const plain = deflate !== undefined && message.data.length < (deflate._threshold as number)
  return message.binary ? (plain ? BINARY_PLAIN : BINARY) : (plain ? TEXT_PLAIN : TEXT)
}
