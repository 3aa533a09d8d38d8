import { test } from 'tap'
import { Emitter } from '../lib/client/emitter.ts'

test('the emitter: on, once, off, listenerCount; a listener that throws goes to the error listeners', async (t) => {
  class Events extends Emitter<{ a: [n: number], error: [err: Error] }> {
    fire (n: number): void { this.emit('a', n) }
  }
  const e = new Events()
  const seen: number[] = []
  const keep = (n: number): void => { seen.push(n) }
  e.on('a', keep)
  e.once('a', n => seen.push(n * 10))
  const removed = (): void => { t.fail('removed') }
  e.on('a', removed)
  e.off('a', removed)
  e.off('error', removed)
  e.fire(1)
  e.fire(2)
  t.same(seen, [1, 10, 2])
  t.equal(e.listenerCount('a'), 1)
  t.equal(e.listenerCount('error'), 0)
  e.on('a', () => { throw new Error('boom') })
  e.fire(3)
  const errors: Error[] = []
  e.on('error', err => errors.push(err))
  e.fire(4)
  t.match(errors, [{ message: 'boom' }], 'without error listeners the error is dropped')
})
