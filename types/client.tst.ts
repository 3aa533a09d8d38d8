import { expect, test } from 'tstyche'
import WebSocket from 'ws'
import { StabilizerClient, type ClientState, type SocketConstructor } from '../lib/client/index.ts'
import { RedisAdapter } from '../lib/adapters/redis.ts'
import type { WsAdapter } from '../plugin.ts'

interface Price { symbol: string, price: number }
interface Order { symbol: string, qty: number }

const client = new StabilizerClient<Price, Order>('ws://localhost/feed', { WebSocket: WebSocket as unknown as SocketConstructor })

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
})

test('events are typed', () => {
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
