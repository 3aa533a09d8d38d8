import { test } from 'tap'
import WebSocket from 'ws'
import { StabilizerClient, type ClientOptions } from '../lib/client/index.ts'

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
