import { ClientError, ClientErrorCodes } from './errors.ts'

/** A frame as it goes to the socket. */
export type Frame = string | ArrayBuffer | ArrayBufferView

/*
 * Sends made while the client is disconnected, kept in order for the next connection,
 * up to a bound: beyond it `push` throws, so a caller never believes a lost send was kept.
 */
export class SendQueue {
  #frames: Frame[] = []
  #max: number

  constructor (max: number) {
    this.#max = max
  }

  get size (): number {
    return this.#frames.length
  }

  /** `kept`: the unacknowledged frames of the session (protocol 2), which share the bound. */
  push (frame: Frame, kept = 0): void {
    if (this.#frames.length + kept >= this.#max) {
      throw new ClientError(ClientErrorCodes.QUEUE_FULL, `Expected at most maxQueueSize (${this.#max}) sends to wait for the connection or an acknowledgement, got one more`)
    }
    this.#frames.push(frame)
  }

  /** Takes every waiting frame, oldest first. */
  take (): Frame[] {
    return this.#frames.splice(0)
  }
}
