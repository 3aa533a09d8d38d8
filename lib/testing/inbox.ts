import { TestingClosedError, TestingTimeoutError } from '../errors.ts'

/*
 * The buffered inbox of a test client: every frame is kept from the moment the socket
 * exists, in arrival order, until a wait takes it. A wait takes the first frame it matches;
 * frames it does not match stay where they are for later waits (nothing is skipped).
 */

/** A frame as it came: `data` is its bytes, `isBinary` tells a binary frame from a text one. */
export interface Frame { data: Buffer, isBinary: boolean }

/** How the socket closed: the code and reason of the close frame (1006 and `''` without one). */
export interface CloseInfo { code: number, reason: string }

/** A frame with its JSON value and `type`, parsed once on arrival. */
export interface Entry {
  frame: Frame
  isJson: boolean
  json: unknown
  /** The `type` field when the frame is a JSON object with a string `type`. */
  type: string | undefined
}

export function entryOf (data: Buffer, isBinary: boolean): Entry {
  const frame = { data, isBinary }
  if (isBinary) return { frame, isJson: false, json: undefined, type: undefined }
  let json: unknown
  try {
    json = JSON.parse(data.toString())
  } catch {
    return { frame, isJson: false, json: undefined, type: undefined }
  }
  const type = (json as { type?: unknown } | null)?.type
  return { frame, isJson: true, json, type: typeof type === 'string' ? type : undefined }
}

/** How a frame is named in error messages. */
export function describeEntry (entry: Entry): string {
  return entry.frame.isBinary ? `a binary message (${entry.frame.data.length} bytes)` : `\`${entry.frame.data.toString().slice(0, 200)}\``
}

export function describeClose (info: CloseInfo): string {
  return info.reason === '' ? String(info.code) : `${info.code} (${info.reason})`
}

function label (entry: Entry): string {
  return entry.type ?? (entry.frame.isBinary ? 'binary' : 'text')
}

interface Waiter {
  match: (entry: Entry) => boolean
  what: string
  resolve: (entry: Entry) => void
  reject: (err: Error) => void
}

export class Inbox {
  readonly #target: string
  readonly #entries: Entry[] = []
  readonly #waiters: Waiter[] = []
  #closed: CloseInfo | undefined

  constructor (target: string) {
    this.#target = target
  }

  get size (): number {
    return this.#entries.length
  }

  push (entry: Entry): void {
    const i = this.#waiters.findIndex(w => w.match(entry))
    if (i === -1) this.#entries.push(entry)
    else this.#waiters.splice(i, 1)[0].resolve(entry)
  }

  /** Takes the first frame `match` accepts: at once from the inbox, or the next that comes within `ms`. */
  take (match: (entry: Entry) => boolean, what: string, ms: number): Promise<Entry> {
    const i = this.#entries.findIndex(match)
    if (i !== -1) return Promise.resolve(this.#entries.splice(i, 1)[0])
    if (this.#closed !== undefined) return Promise.reject(new TestingClosedError(this.#target, describeClose(this.#closed), what))
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1)
        reject(new TestingTimeoutError(ms, `${what} on \`${this.#target}\`${this.#note()}`))
      }, ms)
      const waiter: Waiter = {
        match,
        what,
        resolve (entry) {
          clearTimeout(timer)
          resolve(entry)
        },
        reject (err) {
          clearTimeout(timer)
          reject(err)
        }
      }
      this.#waiters.push(waiter)
    })
  }

  /** Takes every frame kept so far. */
  drain (): Entry[] {
    return this.#entries.splice(0)
  }

  /** The socket closed: waits that nothing in the inbox can answer fail now rather than at their timeout. */
  close (info: CloseInfo): void {
    this.#closed = info
    for (const waiter of this.#waiters.splice(0)) {
      waiter.reject(new TestingClosedError(this.#target, describeClose(info), waiter.what))
    }
  }

  #note (): string {
    const n = this.#entries.length
    if (n === 0) return '; nothing else came'
    return `; ${n} other ${n === 1 ? 'message is' : 'messages are'} in the inbox (${this.#entries.slice(0, 10).map(label).join(', ')})`
  }
}
