/*
 * The part of a WebSocket the client uses. The browser's WebSocket and the `ws` package
 * both have it, so the client needs neither the DOM types nor Node's.
 */

export interface SocketMessageEvent { readonly data: unknown }
export interface SocketCloseEvent { readonly code: number, readonly reason: string }

/**
 * The handlers' parameters are typed `never` so that a WebSocket class fits whatever its
 * own event types are; the client reads only `data` from a message event, and `code` and
 * `reason` from a close event, which every implementation has.
 */
export interface SocketLike {
  readonly readyState: number
  binaryType: string
  onopen: ((event: never) => void) | null
  onmessage: ((event: never) => void) | null
  onclose: ((event: never) => void) | null
  onerror: ((event: never) => void) | null
  send (data: string | ArrayBuffer | ArrayBufferView): void
  close (code?: number, reason?: string): void
}

/** A WebSocket class: `globalThis.WebSocket` in browsers, the `ws` package's `WebSocket` in Node. */
export type SocketConstructor = new (url: string, protocols?: string | string[]) => SocketLike
