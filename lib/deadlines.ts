/*
 * Deadlines of many connections (credentials that expire) on one timer: a binary heap by
 * time, the timer set for the earliest. A deadline moved or cancelled stays in the heap
 * and is skipped when it comes up, but lets go of its item at once (an ended connection
 * is not kept until a deadline it no longer has); the heap is rebuilt when such entries
 * are more than half of it.
 */

interface Entry<T> { at: number, item: T | undefined }

export class Deadlines<T> {
  #heap: Array<Entry<T>> = []
  #current = new Map<T, Entry<T>>()
  #timer: NodeJS.Timeout | undefined = undefined
  #armedFor = Infinity
  #onDue: (item: T) => void

  constructor (onDue: (item: T) => void) {
    this.#onDue = onDue
  }

  get size (): number {
    return this.#current.size
  }

  set (item: T, at: number): void {
    this.#forget(item)
    const entry = { at, item }
    this.#current.set(item, entry)
    this.#push(entry)
    if (at < this.#armedFor) this.#arm(at)
  }

  delete (item: T): void {
    this.#forget(item)
    if (this.#current.size === 0) this.stop()
    // a sorted array is a heap
    else if (this.#heap.length > 2 * this.#current.size + 16) this.#heap = [...this.#current.values()].sort((a, b) => a.at - b.at)
  }

  #forget (item: T): void {
    const entry = this.#current.get(item)
    if (entry === undefined) return
    entry.item = undefined
    this.#current.delete(item)
  }

  stop (): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
    this.#armedFor = Infinity
    this.#heap = []
    this.#current.clear()
  }

  #arm (at: number): void {
    clearTimeout(this.#timer)
    this.#armedFor = at
    this.#timer = setTimeout(() => this.#fire(), Math.max(0, at - Date.now())).unref()
  }

  #fire (): void {
    this.#timer = undefined
    this.#armedFor = Infinity
    const now = Date.now()
    while (this.#heap.length > 0 && this.#heap[0].at <= now) {
      const { item } = this.#pop()
      if (item === undefined) continue
      this.#current.delete(item)
      this.#onDue(item)
    }
    if (this.#heap.length > 0) this.#arm(this.#heap[0].at)
  }

  #push (entry: Entry<T>): void {
    const heap = this.#heap
    heap.push(entry)
    let i = heap.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (heap[parent].at <= heap[i].at) break
      ;[heap[parent], heap[i]] = [heap[i], heap[parent]]
      i = parent
    }
  }

  #pop (): Entry<T> {
    const heap = this.#heap
    const top = heap[0]
    const last = heap.pop()!
    if (heap.length > 0) {
      heap[0] = last
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        const r = l + 1
        let smallest = i
        if (l < heap.length && heap[l].at < heap[smallest].at) smallest = l
        if (r < heap.length && heap[r].at < heap[smallest].at) smallest = r
        if (smallest === i) break
        ;[heap[smallest], heap[i]] = [heap[i], heap[smallest]]
        i = smallest
      }
    }
    return top
  }
}
