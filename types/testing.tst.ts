import { expect, test } from 'tstyche'
import Fastify from 'fastify'
import type { IncomingHttpHeaders } from 'node:http'
import type { TestContext } from 'node:test'
import type { Test } from 'tap'
import {
  wsTesting, WsTesting, WsTestClient, TestingTimeoutError,
  type CloseInfo, type Envelope, type Frame, type MessageOfType, type MessageType, type TeardownTarget, type WelcomeFrame
} from '../lib/testing/index.ts'

type In = { type: 'price', symbol: string, price: number } | { type: 'news', text: string }
interface Order { symbol: string, qty: number }

const app = Fastify()
const ws = wsTesting(app, { timeout: 100 })

test('the factory takes the app and a test with after()', () => {
  expect(ws).type.toBe<WsTesting>()
  expect(wsTesting).type.toBeCallableWith(app, { test: { after (fn: () => unknown) { fn() } } })
  expect(wsTesting).type.toBeCallableWith(app, { transport: 'listen' })
  expect(wsTesting).type.not.toBeCallableWith(app, { transport: 'tcp' })
  expect(wsTesting).type.not.toBeCallableWith(app, { test: {} })
  expect(wsTesting).type.not.toBeCallableWith({ after () {} })
  expect(ws.closeAll()).type.toBe<Promise<void>>()
  expect<{ after (fn: () => void): void }>().type.toBeAssignableTo<TeardownTarget>()
  expect<TestContext>().type.toBeAssignableTo<TeardownTarget>()
  expect<Test>().type.toBeAssignableTo<TeardownTarget>()
})

test('connect is generic over the messages in and out', async () => {
  expect(await ws.connect('/x')).type.toBe<WsTestClient<unknown, unknown>>()
  expect(await ws.connect<In, Order>('/x', { headers: { authorization: 'x' } satisfies IncomingHttpHeaders })).type.toBe<WsTestClient<In, Order>>()
  expect(ws.connect).type.not.toBeCallableWith('/x', { answerPings: 'yes' })
})

declare const client: WsTestClient<In, Order>
declare const untyped: WsTestClient

test('json() is the message type, narrowed by type', async () => {
  expect(await client.json()).type.toBe<In>()
  expect(await client.json({ type: 'price' })).type.toBe<{ type: 'price', symbol: string, price: number }>()
  expect(await client.json({ type: 'news', timeout: 10 })).type.toBe<{ type: 'news', text: string }>()
  expect(client.json).type.not.toBeCallableWith({ type: 'nope' })
  expect(await client.json<{ other: true }>()).type.toBe<{ other: true }>()
  expect(await untyped.json()).type.toBe<unknown>()
  expect(await untyped.json({ type: 'hello' })).type.toBe<{ type: 'hello' }>()
  expect(await untyped.json<WelcomeFrame>({ type: 'welcome' })).type.toBe<WelcomeFrame>()
})

test('raw frames, text, envelopes and unwrapped data', async () => {
  expect(await client.next()).type.toBe<Frame>()
  expect(await client.next({ type: 'news' })).type.toBe<Frame>()
  expect(client.next).type.not.toBeCallableWith({ type: 'nope' })
  expect(await client.text()).type.toBe<string>()
  expect(await client.data()).type.toBe<In>()
  expect(await client.data<Buffer>()).type.toBe<Buffer>()
  expect(await client.envelope()).type.toBe<Envelope<In>>()
  expect((await client.envelope()).offset).type.toBe<number | undefined>()
  expect(await client.welcome()).type.toBe<WelcomeFrame>()
  expect(client.drain()).type.toBe<Frame[]>()
})

test('send takes the outgoing type, text or bytes', () => {
  expect(client.send({ symbol: 'X', qty: 1 })).type.toBe<void>()
  expect(client.send('text')).type.toBe<void>()
  expect(client.send(Buffer.from('x'))).type.toBe<void>()
  expect(client.send(new ArrayBuffer(1))).type.toBe<void>()
  expect(client.send).type.not.toBeCallableWith({ symbol: 'X' })
  expect(untyped.send).type.toBeCallableWith({ anything: true })
})

test('closes', async () => {
  expect(client.closed).type.toBe<Promise<CloseInfo>>()
  expect(await client.expectClose(1000)).type.toBe<CloseInfo>()
  expect(client.expectClose).type.toBeCallableWith(undefined, { timeout: 10 })
  expect(client.expectClose).type.not.toBeCallableWith('1000')
  expect(await client.close(4000, 'bye')).type.toBe<CloseInfo>()
  expect(await client.terminate()).type.toBe<CloseInfo>()
})

test('the helper types', () => {
  expect<MessageType<In>>().type.toBe<'price' | 'news'>()
  expect<MessageType<unknown>>().type.toBe<string>()
  expect<MessageOfType<In, 'news'>>().type.toBe<{ type: 'news', text: string }>()
  expect<MessageOfType<{ a: 1 }, 'x'>>().type.toBe<{ a: 1 } & { type: 'x' }>()
  expect(new TestingTimeoutError(1, 'x')).type.toBeAssignableTo<Error & { code: string }>()
})
