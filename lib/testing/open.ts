import WebSocket, { type WebSocketServer } from 'ws'
import type { FastifyInstance } from 'fastify'
import type { IncomingHttpHeaders } from 'node:http'
import type { Duplex } from 'node:stream'
import { TestingUpgradeRefusedError } from '../errors.ts'
import { noop } from './deadline.ts'

/*
 * Opening a socket, in two ways. `onSocket` gets the WebSocket before it can receive
 * anything, so the first message a route sends at connect is never missed.
 *
 * - injected (`app.injectWS`, no port): @fastify/websocket creates the client WebSocket
 *   itself and resolves once it is open, and the server's first frames may have been read
 *   by then; its `onInit` hook hands us the socket before the upgrade is even dispatched.
 *   Its in-memory stream never emits `close` after both sides have ended, so the server's
 *   socket would wait ws' `closeTimeout` (3 s here) after every close handshake, delaying
 *   the server's `close` (and `disconnect`) and `app.close()`. We destroy the server end
 *   once both sides have ended, as a TCP socket closes.
 *   injectWS (@fastify/websocket 11.3.7 and before) also writes `sec-websocket-version` as the
 *   number 13, over any header given; ws from 8.23.1 compares it as the string a real request
 *   always carries and answers 400 (8.23.0 converted it with `+`). Our injected requests carry
 *   `kInjected` (injectWS spreads its upgrade context into the request) and, before ws looks at
 *   them, get the header as a string: `handleUpgrade` of the app's ws server is wrapped, once
 *   per server, the one place we touch a server of the app's. It is reached whichever server
 *   @fastify/websocket listens on, and other requests pass through it untouched.
 * - a URL (`ws://`…), through ws: a real socket.
 */

const kInjected = Symbol('fastify-websocket-stabilizer.testing.injected')
const versionAsString = new WeakSet<WebSocketServer>()

export interface Opening {
  socket: Promise<WebSocket>
  /** Gives up an opening that took too long: nothing of it is left behind. */
  abort (): void
}

export function injectSocket (app: FastifyInstance, path: string, headers: IncomingHttpHeaders, onSocket: (ws: WebSocket) => void): Opening {
  let stream: Duplex | undefined
  const capture = (_request: unknown, socket: Duplex): void => { stream = socket }
  // injectWS emits `upgrade` on the server synchronously, before it returns
  app.server.prependListener('upgrade', capture)
  sendVersionAsString(app.websocketServer)
  const context = { headers, [kInjected]: true }
  const socket = app.injectWS(path, context, { onInit: onSocket })
    .catch((err: Error) => { throw upgradeRefused(path, Number(err.message.split(' ').pop())) })
  app.server.removeListener('upgrade', capture)
  // undefined when @fastify/websocket was given its own `server`: closes then take ws' closeTimeout
  const server = stream
  if (server !== undefined) closeWhenEnded(server)
  return {
    socket,
    abort () {
      server?.destroy()
      socket.then(ws => ws.terminate(), noop)
    }
  }
}

function sendVersionAsString (wss: WebSocketServer): void {
  if (versionAsString.has(wss)) return
  versionAsString.add(wss)
  const handleUpgrade = wss.handleUpgrade.bind(wss)
  wss.handleUpgrade = (request, socket, head, callback) => {
    if (kInjected in request) request.headers['sec-websocket-version'] = String(request.headers['sec-websocket-version'])
    handleUpgrade(request, socket, head, callback)
  }
}

function closeWhenEnded (stream: Duplex): void {
  let open = 2
  const ended = (): void => {
    open -= 1
    if (open === 0) stream.destroy()
  }
  stream.once('end', ended)
  stream.once('finish', ended)
}

export function urlSocket (url: string, headers: IncomingHttpHeaders, onSocket: (ws: WebSocket) => void): Opening {
  const ws = new WebSocket(url, { headers })
  onSocket(ws)
  const socket = new Promise<WebSocket>((resolve, reject) => {
    ws.once('open', () => resolve(ws))
    ws.once('unexpected-response', (_request, response) => {
      reject(upgradeRefused(url, Number(response.statusCode)))
      ws.terminate()
    })
    ws.once('error', reject)
  })
  return { socket, abort: () => ws.terminate() }
}

/** An upgrade refused with that HTTP status, with `statusCode` set to it. */
export function upgradeRefused (target: string, status: number): Error {
  return Object.assign(new TestingUpgradeRefusedError(target, status), { statusCode: status })
}
