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
