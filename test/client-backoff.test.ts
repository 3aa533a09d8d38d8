import { test } from 'tap'
import WebSocket from 'ws'
import { createServer, type Socket } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { StabilizerClient, backoffCap, backoffDelay, DEFAULT_RECONNECT, type Clock, type ClientOptions } from '../lib/client/index.ts'
import { buildApp, until, urlOf } from './helpers.ts'

/*
 * Reconnect timing: the backoff formula, then the delays a client really waits, read from
 * an injected clock (so nothing waits for them) with a fixed random source and with
 * Math.random, against a closed port and against the plugin.
 */

type Tap = Parameters<typeof buildApp>[0] & { teardown (fn: () => unknown): void }

/** A clock whose timers run only when the test says so; it also counts how many are set at once. */
class ManualClock implements Clock {
  time = 1_000_000
  timers = new Map<object, { callback: () => void, ms: number }>()
  mostAtOnce = 0
  now = (): number => this.time
  setTimeout = (callback: () => void, ms: number): unknown => {
    const handle = {}
    this.timers.set(handle, { callback, ms })
    this.mostAtOnce = Math.max(this.mostAtOnce, this.timers.size)
    return handle
  }

  clearTimeout = (handle: unknown): void => { this.timers.delete(handle as object) }

  /** The one timer that is set. */
  get only (): { callback: () => void, ms: number } {
    if (this.timers.size !== 1) throw new Error(`expected one timer, ${this.timers.size} are set`)
    return [...this.timers.values()][0]
  }

  fire (): void {
    const [handle, timer] = [...this.timers.entries()][0]
    this.timers.delete(handle)
    timer.callback()
  }
}

async function closedPort (): Promise<string> {
  const port = await new Promise<number>(resolve => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number }
      s.close(() => resolve(port))
    })
  })
  return `ws://127.0.0.1:${port}/`
}

function client (t: Tap, url: string, options: ClientOptions): StabilizerClient {
  const c = new StabilizerClient(url, { WebSocket, heartbeat: false, ...options })
  t.teardown(() => c.close())
  return c
}

function dropAll (app: FastifyInstance): void {
  for (const conn of app.wsManager.connections()) (conn.socket as unknown as { _socket: Socket })._socket.destroy()
}

test('the formula: full jitter under a cap that grows by the multiplier up to maxDelay; 1013 multiplies the cap', async (t) => {
  const options = { ...DEFAULT_RECONNECT, initialDelay: 100, maxDelay: 1000, multiplier: 2 }
  t.same([0, 1, 2, 3, 4, 5].map(a => backoffCap(options, a)), [100, 200, 400, 800, 1000, 1000])
  t.same([0, 1, 2].map(a => backoffDelay(options, a, () => 0.5)), [50, 100, 200])
  t.equal(backoffCap(options, 0, true), 400, 'try again later: four times the cap')
  t.equal(backoffCap(options, 2, true), 1000, 'and still no more than maxDelay')
  t.equal(backoffDelay(options, 9, () => 0.999999), 999)
  t.equal(backoffDelay(options, 0, () => 0), 0)
  for (let i = 0; i < 1000; i++) {
    const d = backoffDelay(options, 2, Math.random)
    if (d < 0 || d >= 400 || !Number.isInteger(d)) t.fail(`delay ${d} out of [0, 400)`)
  }
})

test('failed attempts (connection refused) back off along the sequence, one timer at a time, then give up after maxAttempts', async (t) => {
  const clock = new ManualClock()
  const c = client(t, await closedPort(), { clock, random: () => 0.5, reconnect: { initialDelay: 100, maxDelay: 500, maxAttempts: 5 } })
  const events: Array<{ attempt: number, delay: number }> = []
  c.on('reconnecting', info => events.push(info))
  const errors: string[] = []
  c.on('error', err => errors.push((err as unknown as { code: string }).code))
  const done = c.connect().then(() => 'connected', (err: Error) => err)
  t.equal(clock.only.ms, 10_000, 'the open timeout (default) is the timer while an attempt runs')
  for (let i = 0; i < 5; i++) {
    await until(() => events.length === i + 1)
    t.equal(clock.only.ms, events[i].delay, `the timer is set to the delay announced for attempt ${i + 1}`)
    clock.fire()
  }
  t.match(await done, { code: 'WS_CLIENT_GAVE_UP', message: '5 reconnect attempts in a row failed' })
  t.same(events, [{ attempt: 1, delay: 50 }, { attempt: 2, delay: 100 }, { attempt: 3, delay: 200 }, { attempt: 4, delay: 250 }, { attempt: 5, delay: 250 }])
  t.equal(clock.mostAtOnce, 1, 'never more than one timer')
  t.equal(clock.timers.size, 0, 'none left')
  t.equal(c.state, 'closed')
  t.same(errors.filter(code => code === 'WS_CLIENT_SOCKET_ERROR').length, 6, 'each refused attempt reported')
  t.equal(errors.at(-1), 'WS_CLIENT_GAVE_UP')
})

test('with Math.random: each delay within [0, its cap)', async (t) => {
  const clock = new ManualClock()
  const options = { initialDelay: 50, maxDelay: 400, multiplier: 3, maxAttempts: 6 }
  const c = client(t, await closedPort(), { clock, reconnect: options })
  const delays: number[] = []
  c.on('reconnecting', ({ delay }) => delays.push(delay))
  const done = c.connect().catch(() => {})
  for (let i = 0; i < 6; i++) {
    await until(() => delays.length === i + 1)
    clock.fire()
  }
  await done
  const caps = [50, 150, 400, 400, 400, 400]
  t.equal(delays.length, 6)
  delays.forEach((d, i) => t.ok(Number.isInteger(d) && d >= 0 && d < caps[i], `delay ${d} in [0, ${caps[i]})`))
})

test('close() while waiting to reconnect: the timer is cleared and no attempt follows', async (t) => {
  const clock = new ManualClock()
  const c = client(t, await closedPort(), { clock })
  const connecting = c.connect()
  await new Promise(resolve => c.once('reconnecting', resolve))
  t.equal(c.state, 'reconnecting')
  t.equal(clock.timers.size, 1)
  c.close()
  await t.rejects(connecting, { code: 'WS_CLIENT_CLOSED' })
  t.equal(clock.timers.size, 0)
  t.equal(c.state, 'closed')
})

test('a connection that stayed open resetAfter ms starts the count again; short-lived ones do not', async (t) => {
  const app = await buildApp(t, { reconnect: { secret: 'backoff-tests-secret-0123456789' } }, app => {
    app.get('/ws', { websocket: true, config: { ws: { reconnect: true } } }, () => {})
  })
  const clock = new ManualClock()
  const c = client(t, urlOf(app, '/ws'), { clock, random: () => 0.5, reconnect: { initialDelay: 100, resetAfter: 1000 } })
  const events: Array<{ attempt: number, delay: number }> = []
  c.on('reconnecting', info => events.push(info))
  await c.connect()
  t.equal(clock.timers.size, 0, 'no timer while open without a heartbeat')
  const cycle = async (advance: number): Promise<void> => {
    clock.time += advance
    const count = events.length
    const resumed = new Promise(resolve => c.once('resumed', resolve))
    dropAll(app)
    await until(() => events.length === count + 1)
    clock.fire()
    await resumed
  }
  await cycle(0)
  await cycle(999)
  await cycle(1000)
  t.same(events, [{ attempt: 1, delay: 50 }, { attempt: 2, delay: 100 }, { attempt: 1, delay: 50 }])
})
