import { expect, test } from 'tstyche'
import WebSocket from 'ws'
import { StabilizerClient, type ClientErrorCode, type ClientState, type ResumeFailure, type SocketConstructor } from '../lib/client/index.ts'
import { RedisAdapter } from '../lib/adapters/redis.ts'
import type { WsAdapter } from '../plugin.ts'

interface Price { symbol: string, price: number }
interface Order { symbol: string, qty: number }

const client = new StabilizerClient<Price, Order>('ws://localhost/feed', { WebSocket })

test('the client is typed by its messages', () => {
  client.on('message', (data) => {
    expect(data).type.toBe<Price>()
  })
  expect(client.send({ symbol: 'X', qty: 1 })).type.toBe<void>()
  expect(client.send('text')).type.toBe<void>()
  expect(client.send(new Uint8Array(2))).type.toBe<void>()
  expect(client.send).type.not.toBeCallableWith({ symbol: 'X' })
  expect(client.state).type.toBe<ClientState>()
  expect(client.latency).type.toBe<number | undefined>()
  expect(client.clientId).type.toBe<string | undefined>()
  expect(client.close(4000, 'bye')).type.toBe<void>()
  expect(client.connect()).type.toBe<Promise<void>>()
})

test('error codes are a closed set', () => {
  expect<ClientErrorCode>().type.toBeAssignableFrom('WS_CLIENT_QUEUE_FULL' as const)
  expect<ClientErrorCode>().type.not.toBeAssignableFrom('WS_CLIENT_NOPE' as const)
})

test('the ws package\'s WebSocket fits as it is', () => {
  expect(WebSocket).type.toBeAssignableTo<SocketConstructor>()
  expect(StabilizerClient).type.not.toBeConstructableWith('ws://x', { WebSocket: class {} })
  expect(StabilizerClient).type.not.toBeConstructableWith('ws://x', { protocol: 'v2' })
  expect(StabilizerClient).type.toBeConstructableWith('ws://x', { heartbeat: { start: 'open' }, reconnect: false, clock: { now: () => 0 } })
})

test('events are typed', () => {
  client.on('resumeFailed', (info) => {
    expect(info.reason).type.toBe<ResumeFailure>()
    expect<'unavailable'>().type.toBeAssignableTo<typeof info.reason>()
  })
  client.on('error', (err) => {
    expect(err).type.toBe<Error>()
  })
  client.on('resumed', (info) => {
    expect(info).type.toBe<{ replayed: number }>()
  })
  client.on('close', (info) => {
    expect(info.willReconnect).type.toBe<boolean>()
  })
  expect(client.on).type.not.toBeCallableWith('nope', () => {})
})

test('async iteration yields the message type', async () => {
  for await (const price of client) {
    expect(price).type.toBe<Price>()
  }
})

test('the Redis adapter is a WsAdapter', () => {
  expect(new RedisAdapter({ url: 'redis://x' })).type.toBeAssignableTo<WsAdapter>()
  expect(RedisAdapter).type.not.toBeConstructableWith({ prefix: 1 })
})
