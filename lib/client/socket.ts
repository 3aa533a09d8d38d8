/*
 * The part of a WebSocket the client uses: the standard browser WebSocket and the `ws`
 * package both have it, so the client needs neither the DOM types nor Node.
 */

export interface SocketMessageEvent { readonly data: unknown }
export interface SocketCloseEvent { readonly code: number, readonly reason: string }

export interface SocketLike {
  readonly readyState: number
  binaryType: string
  onopen: ((event: unknown) => void) | null
  onmessage: ((event: SocketMessageEvent) => void) | null
  onclose: ((event: SocketCloseEvent) => void) | null
  onerror: ((event: unknown) => void) | null
  send (data: string | ArrayBuffer | ArrayBufferView): void
  close (code?: number, reason?: string): void
}

/** A WebSocket class: `globalThis.WebSocket` in browsers, `ws`'s `WebSocket` in Node. */
export type SocketConstructor = new (url: string, protocols?: string | string[]) => SocketLike
