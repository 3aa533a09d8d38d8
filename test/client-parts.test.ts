import { test } from 'tap'
import WebSocket from 'ws'
import { StabilizerClient, type ClientOptions } from '../lib/client/index.ts'
import { Emitter } from '../lib/client/emitter.ts'
import { heartbeatStep, DEFAULT_HEARTBEAT } from '../lib/client/heartbeat.ts'
import { Session } from '../lib/client/session.ts'
import { SendQueue } from '../lib/client/send-queue.ts'
import { fromBase64, pongFor } from '../lib/client/frames.ts'

/*
 * The client's parts on their own: options checks, the heartbeat's schedule, the resume
 * address, the emitter, the queue, the frames.
 */

test('options are checked once, in the constructor, with what was expected and what came', async (t) => {
  const bad: Array<[ClientOptions, RegExp]> = [
    [{ openTimeout: 0 }, /`openTimeout` to be a number >= 1, got `0`/],
    [{ maxQueueSize: -1 }, /`maxQueueSize` to be a number >= 0, got `-1`/],
    [{ reconnect: { initialDelay: Number.NaN } }, /`reconnect.initialDelay` .* got `NaN`/],
    [{ reconnect: { maxDelay: Infinity } }, /`reconnect.maxDelay` .* got `Infinity`/],
    [{ reconnect: { multiplier: 0.5 } }, /`reconnect.multiplier` to be a number >= 1/],
    [{ reconnect: { maxAttempts: '3' as unknown as number } }, /`reconnect.maxAttempts` .* got `3`/],
    [{ reconnect: { tryAgainLaterFactor: 0 } }, /`reconnect.tryAgainLaterFactor`/],
    [{ reconnect: { resetAfter: -5 } }, /`reconnect.resetAfter`/],
    [{ heartbeat: { interval: 0 } }, /`heartbeat.interval`/],
    [{ heartbeat: { timeout: undefined } }, /`heartbeat.timeout` .* got `undefined`/],
    [{ heartbeat: { start: 'later' as 'open' } }, /`heartbeat.start` to be one of `server-ping`, `open`, got `later`/],
    [{ protocol: 'v2' as 'auto' }, /`protocol` to be one of `auto`, `stabilizer`, `plain`, got `v2`/]
  ]
  for (const [options, message] of bad) t.throws(() => new StabilizerClient('ws://x', { WebSocket, ...options }), { name: 'TypeError', message })
  t.doesNotThrow(() => new StabilizerClient('ws://x', { WebSocket, reconnect: false, heartbeat: false, maxQueueSize: 0 }))
})

test('heartbeat schedule: a ping after interval of quiet, one at a time, silence after timeout', async (t) => {
  const o = { ...DEFAULT_HEARTBEAT, interval: 100, timeout: 300 }
  t.same(heartbeatStep(o, 1000, 1000, 0), { silent: false, ping: false, wait: 100 }, 'just heard: look again when a ping is due')
  t.same(heartbeatStep(o, 1040, 1000, 0), { silent: false, ping: false, wait: 60 })
  t.same(heartbeatStep(o, 1100, 1000, 0), { silent: false, ping: true, wait: 200 }, 'quiet for interval: ping, then wait for the timeout')
  t.same(heartbeatStep(o, 1200, 1000, 1100), { silent: false, ping: false, wait: 100 }, 'a ping is unanswered: no second one')
  t.same(heartbeatStep(o, 1300, 1000, 1100), { silent: true, idle: 300 })
  t.same(heartbeatStep(o, 1300, 1250, 0), { silent: false, ping: false, wait: 50 }, 'traffic moved the moments on')
})

test('the resume address keeps the URL\'s own query', async (t) => {
  const s = new Session()
  t.equal(s.address('ws://h/ws?a=1'), 'ws://h/ws?a=1', 'no token: the URL as it is')
  s.welcome({ type: 'welcome', v: 1, clientId: 'c', token: 'tok-_.', offset: 41, resumed: false })
  t.equal(s.address('ws://h/ws'), 'ws://h/ws?resume=tok-_.&offset=41')
  t.equal(s.address('ws://h/ws?a=1&b=x%20y&resume=old'), 'ws://h/ws?a=1&b=x+y&resume=tok-_.&offset=41')
  t.equal(s.address('/relative?a=1'), '/relative?a=1&resume=tok-_.&offset=41', 'relative URLs too (browsers)')
  s.clear()
  t.same([s.clientId, s.token, s.offset], [undefined, undefined, 0])
})

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

test('the queue with maxQueueSize 0 keeps nothing; frames', async (t) => {
  const q = new SendQueue(0)
  t.throws(() => q.push('x'), { code: 'WS_CLIENT_QUEUE_FULL' })
  t.equal(q.size, 0)
  t.equal(pongFor('{"type":"ping","ts":17}'), '{"type":"pong","ts":17}', 'the ts goes back')
  t.same(fromBase64('AQID'), new Uint8Array([1, 2, 3]))
  t.same(fromBase64(''), new Uint8Array([]))
})
