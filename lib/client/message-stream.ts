/*
 * Async iteration over a client's messages: each iterator buffers what arrives until it
 * is read, and ends when the client closes for good.
 */
export class MessageStream<T> implements AsyncIterator<T> {
  #buffer: T[] = []
  #waiting: Array<(result: IteratorResult<T>) => void> = []
  #ended = false
  #onReturn: () => void

  constructor (onReturn: () => void) {
    this.#onReturn = onReturn
  }

  push (value: T): void {
    const waiter = this.#waiting.shift()
    if (waiter !== undefined) waiter({ value, done: false })
    else this.#buffer.push(value)
  }

  end (): void {
    this.#ended = true
    for (const waiter of this.#waiting.splice(0)) waiter({ value: undefined, done: true })
  }

  async next (): Promise<IteratorResult<T>> {
    if (this.#buffer.length > 0) return { value: this.#buffer.shift()!, done: false }
    if (this.#ended) return { value: undefined, done: true }
    return await new Promise(resolve => this.#waiting.push(resolve))
  }

  async return (): Promise<IteratorResult<T>> {
    this.#onReturn()
    this.end()
    return { value: undefined, done: true }
  }
}
