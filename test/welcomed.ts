import WebSocket from 'ws'
import { connect as tcpConnect, type Socket } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { until } from './helpers.ts'

/** The welcome frame of a resume route, as the resume tests read it. */
export interface Welcome { type: 'welcome', token: string, offset: number, resumed: boolean, replayed?: number, resumeFailed?: string }

/** A socket of a resume route and the frames it read; `welcome` is the first. */
export interface Welcomed { socket: WebSocket, welcome: Welcome, frames: string[] }

/**
 * Opens a socket, closed after the test, and waits for its welcome (at most `timeoutMs`: a
 * spent token on a shared store is answered after the 2 s a resume waits for a claim held
 * elsewhere, see upgrade.ts).
 */
export async function openWelcomed (t: { teardown (fn: () => unknown): void }, url: string, timeoutMs = 5000): Promise<Welcomed> {
  const socket = new WebSocket(url)
  socket.on('error', () => {})
  t.teardown(() => socket.terminate())
  const frames: string[] = []
  socket.on('message', data => frames.push(String(data)))
  await until(() => frames.length > 0, timeoutMs, 'the welcome')
  return { socket, welcome: JSON.parse(frames[0]) as Welcome, frames }
}

/** The path of a resume with a welcome's token and offset. */
export function resumePath (welcome: Welcome): string {
  return `/ws?resume=${encodeURIComponent(welcome.token)}&offset=${welcome.offset}`
}

/** An upgrade request sent by hand over TCP (closed after the test), so that a test can drop it half way. */
export function rawUpgrade (t: { teardown (fn: () => unknown): void }, app: FastifyInstance, path: string): Socket {
  const { port } = app.server.address() as { port: number }
  const socket = tcpConnect(port, '127.0.0.1')
  socket.on('error', () => {})
  t.teardown(() => socket.destroy())
  socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`)
  return socket
}
