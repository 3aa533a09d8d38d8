import type { RawData, WebSocket } from 'ws'
import type { ManagedConnection } from '../connection.ts'
import { kConnection, kDispatch, kHandshake, kHost, kUpstream } from '../symbols.ts'
import { takeTokens } from './rate-limit.ts'

/*
 * The listeners the plugin puts on every managed socket. They are shared functions
 * (`this` is the socket, the connection hangs off a symbol), so attaching them
 * allocates no closure per connection.
 */

type ManagedSocket = WebSocket & { [kConnection]?: ManagedConnection }

const PONG = Buffer.from('{"type":"pong"')
const PING = Buffer.from('{"type":"ping"')
const AUTH_REFRESH = Buffer.from('{"type":"auth.refresh"')
const RESPONSE = Buffer.from('{"type":"response"')

function byteLength (data: RawData): number {
  if (Buffer.isBuffer(data)) return data.length
  if (Array.isArray(data)) return data.reduce((n, b) => n + b.length, 0)
  return data.byteLength
}

function startsWith (data: RawData, prefix: Buffer): boolean {
  return Buffer.isBuffer(data) && data.length >= prefix.length && prefix.compare(data, 0, prefix.length) === 0
}

function onMessage (this: ManagedSocket, data: RawData, isBinary: boolean): void {
  const conn = this[kConnection]!
  // a connection being closed (replaced, refused, timed out) takes no more input
  if (!conn.isOpen) return
  const events = conn[kHost]
  const now = Date.now()
  conn.lastSeen = now
  // the client is heard from: it had its welcome (resume/resumption.ts)
  if (conn[kHandshake] !== undefined) conn[kHandshake] = undefined
  const size = byteLength(data)
  const route = conn.route
  if (size > route.limits.maxMessageSize) {
    events.tooLarge(conn, size)
    return
  }
  if (!isBinary && route.heartbeat.mode === 'message' && route.heartbeat.enabled && size < 128) {
    if (startsWith(data, PONG)) {
      events.heartbeatPong(conn, now)
      return
    }
    if (startsWith(data, PING)) {
      events.appPing(conn, now)
      return
    }
  }
  // protocol 2: every data frame of the client counts, whatever becomes of it, but heartbeat-like ones
  const upstream = conn[kUpstream]
  let redelivered = false
  if (upstream !== undefined && (isBinary || size >= 128 || !(startsWith(data, PING) || startsWith(data, PONG)))) {
    redelivered = ++upstream.received <= upstream.redeliverUntil
    events.counted(conn, upstream)
  }
  if (route.rateLimit !== undefined && !takeTokens(conn, route.rateLimit, size, now)) {
    events.rateLimited(conn, size)
    return
  }
  if (route.auth !== undefined && !isBinary && startsWith(data, AUTH_REFRESH)) {
    events.refreshAuth(conn, data)
    return
  }
  conn.stats.messagesIn++
  conn.stats.bytesIn += size
  // an answer to the server's request (requests.ts): never the app's
  if (!isBinary && startsWith(data, RESPONSE)) {
    events.response(conn, data)
    return
  }
  if (route.routed) events.routeMessage(conn, data, isBinary, redelivered)
  else conn[kDispatch](data, isBinary, redelivered)
}

function onPong (this: ManagedSocket): void {
  const conn = this[kConnection]!
  conn[kHandshake] = undefined
  conn[kHost].heartbeatPong(conn, Date.now())
}

function onPing (this: ManagedSocket): void {
  const conn = this[kConnection]!
  conn[kHandshake] = undefined
  conn.lastSeen = Date.now()
}

function onClose (this: ManagedSocket, code: number, reason: Buffer): void {
  const conn = this[kConnection]!
  conn[kHost].closed(conn, code, reason.toString())
}

function onError (this: ManagedSocket, err: Error): void {
  const conn = this[kConnection]!
  conn[kHost].failed(conn, err)
}

export function attachListeners (socket: WebSocket, conn: ManagedConnection): void {
  (socket as ManagedSocket)[kConnection] = conn
  socket.on('message', onMessage)
  socket.on('pong', onPong)
  socket.on('ping', onPing)
  socket.on('close', onClose)
  socket.on('error', onError)
}

/** True for the plugin's own `error` listener of a socket. */
export function isOwnErrorListener (listener: unknown): boolean {
  return listener === onError
}

export function connectionOf (socket: WebSocket): ManagedConnection | undefined {
  return (socket as ManagedSocket)[kConnection]
}
