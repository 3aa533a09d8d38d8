import WebSocket from 'ws'
import type { WelcomeFrame } from '../client/frames.ts'
import { isPing, isPong, pongFor } from '../client/frames.ts'
import { TestingCloseCodeError, TestingNotJsonError, TestingNotOpenError, TestingTimeoutError } from '../errors.ts'
import { describeClose, describeEntry, entryOf, Inbox, type CloseInfo, type Entry, type Frame } from './inbox.ts'
import { noop, within } from './deadline.ts'

/*
 * A test client: a ws WebSocket whose messages go into a buffered inbox from the start,
 * with bounded waits for the next message (of a JSON `type`, or a resume envelope), the
 * close, and sends of text, binary and JSON.
 */

/** The `type` values of a message union; any string when the messages are not such a union. */
export type MessageType<In> = In extends { type: infer K extends string } ? K : string

/** The member of the union `In` with that `type`; `In & { type: K }` when there is none. */
export type MessageOfType<In, K extends string> = [Extract<In, { type: K }>] extends [never] ? In & { type: K } : Extract<In, { type: K }>

export interface AwaitOptions<K extends string = string> {
  /** Take the first JSON message whose `type` is this; the others stay in the inbox, in order. */
  type?: K
  /** ms; the client's default (the factory's `timeout`, 2000) otherwise. */
  timeout?: number
}

/** A message of a resume-protocol route (`config.ws.reconnect`), with `data` decoded (`binary: true`: a Buffer). */
export interface Envelope<T> { type: 'message', offset?: number, binary?: boolean, data: T }

export interface TestClientSettings {
  /** Default bound of every wait, in ms. Default 2000. */
  timeout: number
  /** Answer the server's `{"type":"ping"}` frames (heartbeat `mode: 'message'`) and keep them and pongs out of the inbox. */
  answerPings: boolean
}

export const DEFAULT_TIMEOUT = 2000
const STATES = ['connecting', 'open', 'closing', 'closed']
const anyEntry = (): boolean => true

export class WsTestClient<In = unknown, Out = unknown> {
  /** The ws WebSocket, for what this class does not cover. */
  readonly socket: WebSocket
  /** The path or URL it was opened with, as error messages name it. */
  readonly target: string
  /** Resolves when the socket has closed, with the code and reason; never rejects. */
  readonly closed: Promise<CloseInfo>
  readonly #inbox: Inbox
  readonly #timeout: number

  /** Wraps a socket that has not opened yet (its messages are listened to from here on); `target` names it in errors. */
  constructor (socket: WebSocket, target: string, settings: Partial<TestClientSettings> = {}) {
    this.socket = socket
    this.target = target
    this.#timeout = settings.timeout ?? DEFAULT_TIMEOUT
    const inbox = this.#inbox = new Inbox(target)
    socket.on('message', (data: Buffer, isBinary: boolean) => {
      if (settings.answerPings === true && !isBinary) {
        const text = data.toString()
        if (isPing(text)) {
          socket.send(pongFor(text))
          return
        }
        if (isPong(text)) return
      }
      inbox.push(entryOf(data, isBinary))
    })
    // errors end in a close (1006), which is what the waits report
    socket.on('error', noop)
    this.closed = new Promise(resolve => socket.once('close', (code: number, reason: Buffer) => {
      const info = { code, reason: reason.toString() }
      inbox.close(info)
      resolve(info)
    }))
  }

  /** Messages received and not taken yet. */
  get pending (): number {
    return this.#inbox.size
  }

  get isOpen (): boolean {
    return this.socket.readyState === WebSocket.OPEN
  }

  /** The next message as it came (with `type`: the next JSON message of that type). */
  async next (options: AwaitOptions<MessageType<In>> = {}): Promise<Frame> {
    return (await this.#take(options)).frame
  }

  /** The next message as text. */
  async text (options: AwaitOptions<MessageType<In>> = {}): Promise<string> {
    return (await this.next(options)).data.toString()
  }

  /** The next message, parsed; rejects with `FST_WS_TESTING_NOT_JSON` if it is not JSON. */
  json<K extends MessageType<In>> (options: AwaitOptions<K> & { type: K }): Promise<MessageOfType<In, K>>
  json<T = In> (options?: AwaitOptions<MessageType<In>>): Promise<T>
  async json (options: AwaitOptions = {}): Promise<unknown> {
    const entry = await this.#take(options)
    if (!entry.isJson) throw new TestingNotJsonError(this.target, describeEntry(entry))
    return entry.json
  }

  /** The next resume-protocol message envelope (`{"type":"message"}`), its base64 `data` decoded when `binary`. */
  async envelope<T = In> (options: { timeout?: number } = {}): Promise<Envelope<T>> {
    const { json } = await this.#take({ type: 'message', timeout: options.timeout }, 'a resume envelope (`{"type":"message"}`)')
    const envelope = json as Envelope<T>
    return envelope.binary === true ? { ...envelope, data: Buffer.from(envelope.data as string, 'base64') as T } : envelope
  }

  /** The `data` of the next resume-protocol envelope: what the server sent, unwrapped. */
  async data<T = In> (options: { timeout?: number } = {}): Promise<T> {
    return (await this.envelope<T>(options)).data
  }

  /** The welcome frame of a resume-protocol route (its first frame). */
  async welcome (options: { timeout?: number } = {}): Promise<WelcomeFrame> {
    return (await this.#take({ type: 'welcome', timeout: options.timeout })).json as WelcomeFrame
  }

  /** Takes every message received so far. */
  drain (): Frame[] {
    return this.#inbox.drain().map(entry => entry.frame)
  }

  /** A string as a text frame, a Buffer, typed array or ArrayBuffer as a binary frame, anything else as JSON. */
  send (data: Out | string | ArrayBufferView | ArrayBuffer): void {
    if (this.socket.readyState !== WebSocket.OPEN) throw new TestingNotOpenError(this.target, STATES[this.socket.readyState])
    this.socket.send(typeof data === 'string' || ArrayBuffer.isView(data) || data instanceof ArrayBuffer ? data : JSON.stringify(data))
  }

  /** Waits for the close (at most `timeout`); with `code`, rejects with `FST_WS_TESTING_CLOSE_CODE` if it closed with another. */
  async expectClose (code?: number, options: { timeout?: number } = {}): Promise<CloseInfo> {
    const ms = options.timeout ?? this.#timeout
    const what = code === undefined ? 'the socket to close' : `the socket to close with ${code}`
    const info = await within(this.closed, ms, () => { throw new TestingTimeoutError(ms, `${what} on \`${this.target}\`; it is ${STATES[this.socket.readyState]}`) })
    if (code !== undefined && info.code !== code) throw new TestingCloseCodeError(this.target, code, describeClose(info))
    return info
  }

  /** Sends a close frame (when open) and waits for the close; a peer that does not answer within `timeout` is terminated. */
  async close (code = 1000, reason = ''): Promise<CloseInfo> {
    if (this.isOpen) this.socket.close(code, reason)
    return await within(this.closed, this.#timeout, () => this.terminate())
  }

  /** Drops the connection without a close frame (the server sees 1006). */
  terminate (): Promise<CloseInfo> {
    this.socket.terminate()
    return this.closed
  }

  #take (options: AwaitOptions, what?: string): Promise<Entry> {
    const { type } = options
    return this.#inbox.take(
      type === undefined ? anyEntry : (entry) => entry.type === type,
      what ?? (type === undefined ? 'a message' : `a JSON message of type \`${type}\``),
      options.timeout ?? this.#timeout
    )
  }
}
