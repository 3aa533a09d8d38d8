import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import type { WebSocket } from 'ws'

/** What a graceful shutdown did. */
export interface ShutdownReport {
  /** Connections whose peer answered the close frame in time. */
  closedCount: number
  /** Connections whose peer did not answer in time and were terminated. */
  terminatedCount: number
  /** Connections whose close frame could not be sent (a close code ws refuses); terminated instead. */
  failedCount: number
  durationMs: number
}

/**
 * Waits until every socket has closed or `timeoutMs` has passed, with one timer for
 * all. Then terminates what is still open. A socket counts as closed cleanly when
 * its close event carries the peer's close code (not 1006, "no close frame").
 */
export function awaitClosed (sockets: WebSocket[], timeoutMs: number): Promise<{ clean: number, terminated: number }> {
  let clean = 0
  let pending = 0
  return new Promise(resolve => {
    const open = new Set<WebSocket>()
    let timer: NodeJS.Timeout | undefined
    function finish (): void {
      clearTimeout(timer)
      for (const socket of open) {
        socket.off('close', onClose)
        socket.terminate()
      }
      resolve({ clean, terminated: sockets.length - clean })
    }
    function onClose (this: WebSocket, code: number): void {
      open.delete(this)
      if (code !== 1006) clean++
      if (--pending === 0) finish()
    }
    for (const socket of sockets) {
      if (socket.readyState === 3) {
        clean++
        continue
      }
      open.add(socket)
      pending++
      socket.once('close', onClose)
    }
    if (pending === 0) finish()
    else timer = setTimeout(finish, timeoutMs)
  })
}

type UpgradeSocket = Duplex & { _httpMessage?: ServerResponse | null }

/**
 * Guards `server.close()` against upgrades that arrive while the drain runs. Fastify is
 * closing by then, so it answers them 503 (`return503OnClosing`) before any hook; but
 * @fastify/websocket handed it a made-up response on the raw socket, and nobody ends that
 * socket: a client that keeps it (ws with an `unexpected-response` listener, a peer that
 * never reads, or any peer, since the server allows half-open sockets) kept `server.close()`
 * waiting for ever. Each such socket is ended once its response is complete, and the ones
 * still there when the drain is over are destroyed by the function returned.
 *
 * The listener runs after @fastify/websocket's (it is added at shutdown), so the response
 * has been written when Fastify answered at once. It reads `socket._httpMessage` (the
 * response Node's `assignSocket` put there): the one place that touches Node's internals.
 */
export function guardLateUpgrades (server: Server): () => void {
  const late = new Set<UpgradeSocket>()
  function onUpgrade (_request: IncomingMessage, socket: UpgradeSocket): void {
    late.add(socket)
    socket.once('close', () => late.delete(socket))
    const response = socket._httpMessage
    // otherwise the request runs the route's hooks, and @fastify/websocket destroys the socket once answered
    if (response?.writableEnded === true) socket.end(() => socket.destroy())
  }
  server.on('upgrade', onUpgrade)
  return function release (): void {
    server.off('upgrade', onUpgrade)
    for (const socket of late) socket.destroy()
  }
}
