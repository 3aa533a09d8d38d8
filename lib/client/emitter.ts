/*
 * A small typed event emitter that runs in browsers and Node alike. A listener that
 * throws does not stop the others: the error goes to the `error` listeners, if any.
 */

type Listener<A extends unknown[]> = (...args: A) => void

export class Emitter<Events extends { [E in keyof Events]: unknown[] }> {
  #listeners: { [E in keyof Events]?: Array<Listener<Events[E]>> } = {}

  on<E extends keyof Events> (event: E, listener: Listener<Events[E]>): this {
    (this.#listeners[event] ??= []).push(listener)
    return this
  }

  off<E extends keyof Events> (event: E, listener: Listener<Events[E]>): this {
    const list = this.#listeners[event]
    if (list !== undefined) this.#listeners[event] = list.filter(l => l !== listener)
    return this
  }

  once<E extends keyof Events> (event: E, listener: Listener<Events[E]>): this {
    const wrapper: Listener<Events[E]> = (...args) => {
      this.off(event, wrapper)
      listener(...args)
    }
    return this.on(event, wrapper)
  }

  listenerCount (event: keyof Events): number {
    return this.#listeners[event]?.length ?? 0
  }

  protected emit<E extends keyof Events> (event: E, ...args: Events[E]): void {
    for (const listener of this.#listeners[event] ?? []) {
      try {
        listener(...args)
      } catch (err) {
        if (event === 'error') continue
        this.emit('error' as E, ...[err] as unknown as Events[E])
      }
    }
  }
}
