import { expect, test } from 'tstyche'
import { Type } from '@sinclair/typebox'
import WebSocket from 'ws'
import { defineMessages, type ManagedConnection, type RequestsOf } from '../plugin.ts'
import { StabilizerClient, type ClientError } from '../lib/client/index.ts'

/*
 * Requests typed end to end: the client's `request` from the server's `defineMessages`
 * (a type, imported with `import type` in client code), and the server's requests from one
 * map of what the client handles, for both `conn.typed<M>().request` and `client.handle`.
 */

const messages = defineMessages({
  join: {
    schema: Type.Object({ room: Type.String() }),
    handler: async (data) => {
      expect(data).type.toBe<{ room: string }>()
      return { room: data.room, members: 3 }
    }
  },
  leave: { schema: Type.Object({ room: Type.String() }), handler: () => undefined },
  free: { handler: (data) => { expect(data).type.toBe<unknown>(); return 'ok' as const } }
})

/** What the server asks of the client: written once, used on both sides. */
interface ClientHandles {
  confirm: { data: { text: string }, answer: boolean }
}

type ChatApi = { requests: RequestsOf<typeof messages>, handles: ClientHandles }

const client = new StabilizerClient<unknown, unknown, ChatApi>('ws://localhost/chat', { WebSocket })

test('RequestsOf: the data is the schema\'s Static, the answer the handler\'s awaited return (null for nothing)', () => {
  expect<RequestsOf<typeof messages>['join']>().type.toBe<{ data: { room: string }, answer: { room: string, members: number } }>()
  expect<RequestsOf<typeof messages>['leave']['answer']>().type.toBe<null>()
  expect<RequestsOf<typeof messages>['free']>().type.toBe<{ data: unknown, answer: 'ok' }>()
})

test('client.request is typed by the server\'s messages', () => {
  expect(client.request('join', { room: 'lobby' })).type.toBe<Promise<{ room: string, members: number }>>()
  expect(client.request('leave', { room: 'lobby' }, { timeout: 500 })).type.toBe<Promise<null>>()
  expect(client.request).type.not.toBeCallableWith('joni', { room: 'lobby' })
  expect(client.request).type.not.toBeCallableWith('join', { room: 1 })
  expect(client.request).type.not.toBeCallableWith('join', { name: 'lobby' })
  expect(client.request).type.not.toBeCallableWith('join', { room: 'lobby' }, { timeout: '1s' })
})

test('client.handle and conn.typed<M>().request share one map', () => {
  expect(client.handle('confirm', async ({ text }) => text.length > 0)).type.not.toRaiseError()
  expect(client.handle).type.not.toBeCallableWith('confirm', async () => 'yes')
  expect(client.handle).type.not.toBeCallableWith('confrim', () => true)
  expect(client.handle).type.not.toBeCallableWith('confirm', (data: { text: number }) => true)
  const conn = null as unknown as ManagedConnection
  expect(conn.typed<ClientHandles>().request('confirm', { text: 'sure?' })).type.toBe<Promise<boolean>>()
  expect(conn.typed<ClientHandles>().request).type.not.toBeCallableWith('confirm', { text: 1 })
  expect(conn.typed<ClientHandles>().request).type.not.toBeCallableWith('other', { text: 'x' })
  expect(conn.request('anything', 1)).type.toBe<Promise<unknown>>()
})

test('an untyped client takes any request; the rejection\'s code includes the server\'s', () => {
  const plain = new StabilizerClient('ws://localhost/x', { WebSocket })
  expect(plain.request('whatever', { any: 1 })).type.toBe<Promise<unknown>>()
  expect(plain.handle('whatever', data => data)).type.not.toRaiseError()
  expect<ClientError['code']>().type.toBeAssignableFrom('VALIDATION_FAILED' as const)
  expect<ClientError['code']>().type.toBeAssignableFrom('WS_CLIENT_REQUEST_TIMEOUT' as const)
  expect<ClientError['code']>().type.not.toBeAssignableFrom('NOPE' as const)
})

test('defineMessages still fits config.ws.messages', () => {
  expect<{ messages?: import('../plugin.ts').MessageDefinitions }>().type.toBeAssignableFrom({ messages })
})
