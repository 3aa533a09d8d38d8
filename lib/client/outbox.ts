import type { Frame } from './send-queue.ts'

/*
 * Protocol 2 (PROTOCOL.md): the frames sent in the session that the server has not
 * acknowledged yet, oldest first, and the count of the session's frames. Frame number
 * `acked + 1` is the oldest kept. An ack drops what it covers; after a resume the rest is
 * sent again, in order, and the server counts it from its `received` on.
 */
export class Outbox {
  #frames: Frame[] = []
  #head = 0
  /** How many of the session's frames the server has acknowledged. */
  acked = 0

  /** Frames kept. */
  get size (): number {
    return this.#frames.length - this.#head
  }

  /** How many frames the session has sent: the `sent` of a resume. */
  get sent (): number {
    return this.acked + this.size
  }

  push (frame: Frame): void {
    this.#frames.push(frame)
  }

  /**
   * The server has had `received` frames of the session: the ones it covers go. False when it
   * claims more than were sent (nothing is dropped then).
   */
  ack (received: number): boolean {
    if (received > this.sent) return false
    if (received <= this.acked) return true
    this.#head += received - this.acked
    this.acked = received
    if (this.#head > 1024 && this.#head * 2 > this.#frames.length) {
      this.#frames = this.#frames.slice(this.#head)
      this.#head = 0
    }
    return true
  }

  /**
   * A resumed session's welcome: the server has had `received` frames. That may be fewer
   * than an ack said before (an instance that crashed acknowledged frames its snapshot had
   * not recorded): the server counts on from `received`, so the kept frames are numbered on
   * from there too.
   */
  resume (received: number): boolean {
    if (received > this.acked) return this.ack(received)
    this.acked = received
    return true
  }

  /** The frames kept, oldest first, to send again. */
  pending (): Frame[] {
    return this.#frames.slice(this.#head)
  }

  /** A fresh session: the count starts again at 0 and the frames kept are the new session's first. */
  restart (): void {
    this.acked = 0
  }

  /** Nothing kept, the count at 0. */
  clear (): void {
    this.#frames = []
    this.#head = 0
    this.acked = 0
  }
}
