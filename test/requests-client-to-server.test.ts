import { test } from 'tap'
import { Type } from '@sinclair/typebox'
import WebSocket from 'ws'
import type { Socket } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { defineMessages, type RequestsOf } from '../plugin.ts'
import { StabilizerClient, ClientError, type ClientOptions } from '../lib/client/index.ts'
import { buildApp, until, urlOf } from './helpers.ts'

/*
 * client.request(): the server's typed handlers answer, each error code comes back as the
 * ClientError's code, timeouts, a request made while away goes out once after the resume,
 * and pending requests fail when the client closes for good.
 */

type Tap = Parameters<typeof buildApp>[0] & { teardown (fn: () => unknown): void }

const Join = Type.Object({ room: Type.String({ minLength: 1, maxLength: 20 }) })

function messages (seen: string[], hold: { release?: () => void }) {
  return defineMessages({
    join: {
      schema: Join,
      handler: (data, { conn }) => {
        seen.push(data.room)
        conn.join(data.room)
        return { room: data.room, members: conn.rooms.size }
      }
    },
    later: { handler: async () => await new Promise<string>(resolve => { hold.release = () => resolve('released') }) },
    quiet: { handler: () => undefined },
    boom: { handler: () => { throw new Error('broken') } },
    limited: { rateLimit: { messagesPerSecond: 1, burst: 1 }, handler: () => 'ok' }
  })
}

type Api = { requests: RequestsOf<ReturnType<typeof messages>> }

async function server (t: Tap): Promise<{ app: FastifyInstance, seen: string[], hold: { release?: () => void }, heard: string[] }> {
  const seen: string[] = []
  const heard: string[] = []
  const hold: { release?: () => void } = {}
  const app = await buildApp(t, { reconnect: { secret: 'requests-tests-secret-0123456789' } }, app => {
    const ws = { messages: messages(seen, hold) }
    app.get('/ws', { websocket: true, config: { ws: { ...ws, reconnect: { maxDisconnect: 60_000 } } } }, () => {})
    app.get('/plain', { websocket: true, config: { ws } }, (_socket, request) => {
      request.wsConnection!.on('message', data => heard.push(data.toString()))
    })
    app.get('/echo', { websocket: true }, (socket) => {
      socket.on('message', data => {
        const text = data.toString()
        socket.send(text)
        socket.send('{"type":"unrelated","id":"c1"}')
        socket.send('{"type":"x.result","id":1}')
        socket.send('{"type":"error","id":"nobody"}')
        socket.send('{"type":"no json')
      })
    })
  })
  return { app, seen, hold, heard }
}

function client (t: Tap, url: string, options: ClientOptions = {}): StabilizerClient<unknown, unknown, Api> {
  const c = new StabilizerClient<unknown, unknown, Api>(url, { WebSocket, ...options })
  t.teardown(() => c.close())
  return c
}

test('a request resolves with the handler\'s answer; one that returns nothing answers null; answers are not messages', async (t) => {
  const { app, seen } = await server(t)
  const c = client(t, urlOf(app, '/ws'))
  const messagesSeen: unknown[] = []
  c.on('message', data => messagesSeen.push(data))
  await c.connect()
  t.same(await c.request('join', { room: 'lobby' }), { room: 'lobby', members: 1 })
  t.same(await c.request('join', { room: 'kitchen' }), { room: 'kitchen', members: 2 })
  t.equal(await c.request('quiet', undefined), null)
  t.same(seen, ['lobby', 'kitchen'])
  t.same(messagesSeen, [], 'the answers were consumed')
  const plain = client(t, urlOf(app, '/plain'), { protocol: 'plain' })
  await plain.connect()
  t.same(await plain.request('join', { room: 'p' }), { room: 'p', members: 1 }, 'plain routes answer as well')
})

test('each error code of the server is the rejection\'s code', async (t) => {
  const { app } = await server(t)
  const c = client(t, urlOf(app, '/plain'))
  const errors: Error[] = []
  c.on('error', err => errors.push(err))
  await c.connect()
  const codeOf = async (promise: Promise<unknown>): Promise<string> => {
    try {
      await promise
      return 'resolved'
    } catch (err) {
      t.ok(err instanceof ClientError)
      return (err as ClientError).code
    }
  }
  t.equal(await codeOf(c.request('join', { room: '' })), 'VALIDATION_FAILED')
  t.equal(await codeOf((c as StabilizerClient).request('nope', {})), 'UNKNOWN_TYPE')
  t.equal(await codeOf(c.request('boom', undefined)), 'INTERNAL')
  t.equal(await codeOf(c.request('limited', undefined)), 'resolved')
  t.equal(await codeOf(c.request('limited', undefined)), 'RATE_LIMITED')
  await t.rejects(c.request('join', 1n as never), TypeError, 'data JSON cannot carry is refused before it is sent')
  await t.rejects((c as StabilizerClient).request('', {}), TypeError)
  await t.rejects(c.request('quiet', undefined, { timeout: 0 }), TypeError)
  t.same(errors, [])
})

test('timeouts: per call and per client; a late answer is then a message like any other', async (t) => {
  const { app, hold } = await server(t)
  const c = client(t, urlOf(app, '/ws'), { requestTimeout: 40 })
  const late: unknown[] = []
  c.on('message', data => late.push(data))
  await c.connect()
  const started = Date.now()
  await t.rejects(c.request('later', undefined), { code: 'WS_CLIENT_REQUEST_TIMEOUT' })
  t.ok(Date.now() - started >= 35, 'the client\'s requestTimeout')
  hold.release!()
  await until(() => late.length === 1)
  // this client speaks protocol 2: the answer came through the log, as the value of a message envelope
  t.same(late[0], { type: 'later.result', id: 'c1', data: 'released' })
  const other = c.request('later', undefined, { timeout: 30 })
  await t.rejects(other, { code: 'WS_CLIENT_REQUEST_TIMEOUT' }, 'per call')
  hold.release!()
  t.throws(() => new StabilizerClient('ws://x', { WebSocket, requestTimeout: 0 }), /requestTimeout/)
})

/** Cuts every connection of the app without a close frame, as a lost network would. */
function dropAll (app: FastifyInstance): void {
  for (const conn of app.wsManager.connections()) (conn.socket as unknown as { _socket: Socket })._socket.destroy()
}

test('a request made while reconnecting waits in the queue and goes out once, after the resume', async (t) => {
  const { app, seen } = await server(t)
  const c = client(t, urlOf(app, '/ws'), { reconnect: { initialDelay: 30 }, random: () => 0.5 })
  await c.connect()
  t.same(await c.request('join', { room: 'a' }), { room: 'a', members: 1 })
  const away = new Promise(resolve => c.once('reconnecting', resolve))
  dropAll(app)
  await away
  t.equal(c.state, 'reconnecting')
  const resumed = new Promise(resolve => c.once('resumed', resolve))
  const answer = c.request('join', { room: 'b' })
  t.equal(c.queued, 1, 'queued while away')
  await resumed
  t.same(await answer, { room: 'b', members: 2 }, 'the resumed session still had room a')
  t.same(seen, ['a', 'b'], 'the handler saw it once')
})

test('closing for good rejects what is pending with WS_CLIENT_CLOSED; a closed client rejects at once', async (t) => {
  const { app, hold } = await server(t)
  const c = client(t, urlOf(app, '/ws'))
  await c.connect()
  const pending = c.request('later', undefined)
  c.close()
  await t.rejects(pending, { code: 'WS_CLIENT_CLOSED' })
  await t.rejects(c.request('quiet', undefined), { code: 'WS_CLIENT_CLOSED' })
  hold.release?.()
})

test('frames that answer no pending request reach the app as they came', async (t) => {
  const { app } = await server(t)
  const c = new StabilizerClient(urlOf(app, '/echo'), { WebSocket })
  t.teardown(() => c.close())
  const got: unknown[] = []
  c.on('message', data => got.push(data))
  await c.connect()
  const pending = c.request('x', 1, { timeout: 60 })
  await until(() => got.length === 5)
  t.same(got, ['{"type":"x","id":"c1","data":1}', '{"type":"unrelated","id":"c1"}', '{"type":"x.result","id":1}', '{"type":"error","id":"nobody"}', '{"type":"no json'])
  await t.rejects(pending, { code: 'WS_CLIENT_REQUEST_TIMEOUT' })
})
