import WebSocket from 'ws'
import { until } from './helpers.ts'

/** The welcome frame of a resume route, as the resume tests read it. */
export interface Welcome { type: 'welcome', token: string, offset: number, resumed: boolean, replayed?: number, resumeFailed?: string }

/** A socket of a resume route and the frames it read; `welcome` is the first. */
export interface Welcomed { socket: WebSocket, welcome: Welcome, frames: string[] }

/** Opens a socket, closed after the test, and waits for its welcome (`timeoutMs`, 2 s by default). */
export async function openWelcomed (t: { teardown (fn: () => unknown): void }, url: string, timeoutMs = 2000): Promise<Welcomed> {
  const socket = new WebSocket(url)
  socket.on('error', () => {})
  t.teardown(() => socket.terminate())
  const frames: string[] = []
  socket.on('message', data => frames.push(String(data)))
  await until(() => frames.length > 0, timeoutMs, 'the welcome')
  return { socket, welcome: JSON.parse(frames[0]) as Welcome, frames }
}
