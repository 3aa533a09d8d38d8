import { test } from 'tap'
import WebSocket from 'ws'
import type { Socket } from 'node:net'
import type { FastifyInstance } from 'fastify'
import type { ManagedConnection, WsStabilizerOptions } from '../plugin.ts'
import { StabilizerClient, type ClientOptions } from '../lib/client/index.ts'
import { buildApp, connect, until, urlOf } from './helpers.ts'

/*
 * conn.request(): the client's handle() answers; its thrown codes, a missing handler, the
 * timeout, the end for good and a resumed drop; answers to no request and malformed ones
 * get error frames and count as violations; response frames never reach the app.
 */

type Tap = Parameters<typeof buildApp>[0] & { teardown (fn: () => unknown): void }

interface Asks {
  confirm: { data: { text: string }, answer: boolean }
  slow: { data: null, answer: string }
}

type Api = { handles: Asks }

async function server (t: Tap, options: WsStabilizerOptions = {}): Promise<{ app: FastifyInstance, heard: string[] }> {
  const heard: string[] = []
  const app = await buildApp(t, { reconnect: { secret: 'requests-tests-secret-0123456789' }, requests: { timeout: 2000 }, limits: { }, ...options }, app => {
    const listen = (_socket: unknown, request: { wsConnection: ManagedConnection | null }): void => {
      request.wsConnection!.on('message', data => heard.push(data.toString()))
    }
    app.get('/ws', { websocket: true, config: { ws: { reconnect: { maxDisconnect: 60_000 } } } }, listen)
    app.get('/plain', { websocket: true, config: { ws: { rateLimit: { maxViolations: 3 } } } }, listen)
    app.get('/odd', { websocket: true }, (socket) => {
      socket.send('{"type":"request" not json')
      socket.send('{"type":"request","id":1,"name":"confirm"}')
      socket.send('{"type":"request","id":"s:1","name":"later"}')
      socket.on('message', data => heard.push(data.toString()))
    })
  })
  return { app, heard }
}

function client (t: Tap, url: string, options: ClientOptions = {}): StabilizerClient<unknown, unknown, Api> {
  const c = new StabilizerClient<unknown, unknown, Api>(url, { WebSocket, ...options })
  t.teardown(() => c.close())
  return c
}

async function only (app: FastifyInstance): Promise<ManagedConnection> {
  await until(() => app.wsManager.getConnectionCount() === 1)
  return [...app.wsManager.connections()][0]
}

function dropAll (app: FastifyInstance): void {
  for (const conn of app.wsManager.connections()) (conn.socket as unknown as { _socket: Socket })._socket.destroy()
}

test('the client\'s handler answers; its thrown code and a missing handler come back as RequestFailedError', async (t) => {
  const { app, heard } = await server(t)
  const c = client(t, urlOf(app, '/ws'))
  const messages: unknown[] = []
  c.on('message', data => messages.push(data))
  c.handle('confirm', async ({ text }) => {
    if (text === 'no') throw Object.assign(new Error('declined'), { code: 'DECLINED' })
    if (text === 'plain throw') throw new Error('just broken')
    if (text === 'not an error') throw 'a string' // eslint-disable-line no-throw-literal
    if (text === 'null') throw null // eslint-disable-line no-throw-literal
    return text === 'yes'
  })
  await c.connect()
  const conn = await only(app)
  const typed = conn.typed<Asks>()
  t.equal(await typed.request('confirm', { text: 'yes' }), true)
  t.equal(await typed.request('confirm', { text: 'maybe' }), false)
  await t.rejects(typed.request('confirm', { text: 'no' }), { code: 'FST_WS_REQUEST_FAILED', clientCode: 'DECLINED', message: /DECLINED: declined/ })
  await t.rejects(typed.request('confirm', { text: 'plain throw' }), { clientCode: 'INTERNAL', message: /just broken/ })
  await t.rejects(typed.request('confirm', { text: 'not an error' }), { clientCode: 'INTERNAL', message: /a string/ })
  await t.rejects(typed.request('confirm', { text: 'null' }), { clientCode: 'INTERNAL', message: /null/ })
  await t.rejects(conn.request('unhandled', 1), { code: 'FST_WS_REQUEST_FAILED', clientCode: 'UNKNOWN_TYPE' })
  c.handle('slow', () => undefined as unknown as string)
  t.equal(await typed.request('slow', null), null, 'a handler that returns nothing answers null')
  c.handle('slow', () => 1n as never)
  await t.rejects(typed.request('slow', null), { clientCode: 'INTERNAL', message: /serialized/ })
  c.handle('slow', undefined)
  await t.rejects(typed.request('slow', null), { code: 'FST_WS_REQUEST_FAILED', clientCode: 'UNKNOWN_TYPE' }, 'the handler was removed')
  t.throws(() => c.handle('slow', 'nope' as never), TypeError)
  t.same(messages, [], 'request frames are not messages')
  t.same(heard, [], 'response frames never reach the route\'s listeners')
  t.throws(() => conn.request('', 1), { code: 'FST_WS_ERROR' })
  t.throws(() => conn.request('x', 1, { timeout: 0 }), { code: 'FST_WS_ERROR' })
  await t.rejects(conn.request('x', 1n), { code: 'FST_WS_INVALID_MESSAGE' })
})

test('unanswered: rejected on the timeout (per call and the plugin option), and when the connection ends for good', async (t) => {
  const { app } = await server(t, { requests: { timeout: 40 } })
  const c = client(t, urlOf(app, '/plain'))
  c.handle('slow', () => new Promise<string>(() => {}))
  await c.connect()
  const conn = await only(app)
  await t.rejects(conn.request('slow', null), { code: 'FST_WS_REQUEST_TIMEOUT', message: /40 ms/ })
  await t.rejects(conn.request('slow', null, { timeout: 20 }), { code: 'FST_WS_REQUEST_TIMEOUT', message: /20 ms/ })
  const pending = [conn.request('slow', null, { timeout: 5000 }), conn.request('slow', null, { timeout: 5000 })]
  c.close()
  for (const p of pending) await t.rejects(p, { code: 'FST_WS_REQUEST_CLOSED' })
  await until(() => !conn.isOpen)
  await t.rejects(conn.request('slow', null), { code: 'FST_WS_REQUEST_CLOSED' }, 'a closed connection is asked nothing')
  await t.rejects(buildApp(t, { requests: { timeout: 0 } }), { code: 'FST_WS_INVALID_OPTIONS', message: /requests\.timeout/ })
})

test('on a resume route a drop is not the end: the resumed client answers the pending request', async (t) => {
  const { app } = await server(t)
  const c = client(t, urlOf(app, '/ws'), { reconnect: { initialDelay: 30 }, random: () => 0.5 })
  let release!: () => void
  c.handle('slow', () => new Promise<string>(resolve => { release = () => resolve('after the drop') }))
  await c.connect()
  const conn = await only(app)
  const answer = conn.typed<Asks>().request('slow', null)
  await until(() => release !== undefined)
  const away = new Promise(resolve => c.once('reconnecting', resolve))
  dropAll(app)
  await away
  release()
  await new Promise(resolve => c.once('resumed', resolve))
  t.equal(await answer, 'after the drop')
  const resumed = await only(app)
  t.not(resumed, conn, 'another ManagedConnection, the same clientId')
  t.equal(resumed.id, conn.id)
  const left = t.rejects(resumed.request('slow', null, { timeout: 5000 }), { code: 'FST_WS_REQUEST_CLOSED' }, 'a shutdown ends it for good')
  await app.wsManager.gracefulShutdown({ timeout: 200 })
  await left
})

test('an answer to no request, another client\'s, or a malformed one: an error frame, counted as a violation', async (t) => {
  const { app, heard } = await server(t)
  const raw = await connect(app, '/plain')
  const other = await connect(app, '/plain')
  await until(() => app.wsManager.getConnectionCount() === 2)
  const [first, second] = [...app.wsManager.connections()]
  const asked = first.request('q', { n: 1 }, { timeout: 2000 })
  const frame = await raw.json<{ type: string, id: string, name: string, data: unknown }>()
  t.same(frame, { type: 'request', id: frame.id, name: 'q', data: { n: 1 } })
  t.match(frame.id, /^s:[0-9a-f-]{36}:\d+$/)
  other.send({ type: 'response', id: frame.id, data: 'not yours' })
  t.match(await other.json(), { type: 'error', code: 'UNKNOWN_REQUEST', id: frame.id })
  raw.send({ type: 'response', id: frame.id, error: 'no object' })
  t.match(await raw.json(), { type: 'error', code: 'INVALID_MESSAGE', id: frame.id })
  raw.send({ type: 'response', id: frame.id, data: { ok: 1 } })
  t.same(await asked, { ok: 1 }, 'the owner\'s answer still counts')
  const again = first.request('q', null)
  const { id } = await raw.json<{ id: string }>()
  raw.send({ type: 'response', id, error: { code: 'NO_MESSAGE' } })
  await t.rejects(again, { clientCode: 'NO_MESSAGE', message: /NO_MESSAGE: $/ })
  raw.send({ type: 'response', id: frame.id, data: 'twice' })
  t.match(await raw.json(), { type: 'error', code: 'UNKNOWN_REQUEST', id: frame.id })
  raw.send('{"type":"response" broken')
  t.match(await raw.json(), { type: 'error', code: 'INVALID_JSON' })
  raw.send({ type: 'response', id: 7 })
  t.match(await raw.json(), { type: 'error', code: 'INVALID_MESSAGE' })
  t.equal((await raw.closed).code, 1008, 'too many violations close only that socket')
  t.ok(second.isOpen)
  t.same(heard, [])
  t.match(app.wsManager.getStats().inboundRejectedTotal, { UNKNOWN_REQUEST: 2, INVALID_MESSAGE: 2, INVALID_JSON: 1 })
  await other.close()
})

test('request frames that do not parse reach the app as messages; an answer that cannot go is reported unless the client closed', async (t) => {
  const { app, heard } = await server(t)
  const c = client(t, urlOf(app, '/odd'), { reconnect: { initialDelay: 5000 }, maxQueueSize: 0 })
  const messages: unknown[] = []
  const errors: Array<{ code?: string }> = []
  c.on('message', data => messages.push(data))
  c.on('error', err => errors.push(err as { code?: string }))
  let release!: (answer: string) => void
  ;(c as StabilizerClient).handle('later', () => new Promise<string>(resolve => { release = resolve }))
  await c.connect()
  await until(() => messages.length === 2 && release !== undefined)
  t.same(messages, ['{"type":"request" not json', '{"type":"request","id":1,"name":"confirm"}'])
  const away = new Promise(resolve => c.once('reconnecting', resolve))
  dropAll(app)
  await away
  release('too late')
  await until(() => errors.some(e => e.code === 'WS_CLIENT_QUEUE_FULL'))
  t.same(heard, [])

  const d = client(t, urlOf(app, '/odd'))
  ;(d as StabilizerClient).handle('later', () => new Promise<string>(resolve => { release = resolve }))
  const dErrors: unknown[] = []
  d.on('error', err => dErrors.push(err))
  await d.connect()
  await until(() => app.wsManager.getConnectionCount() === 1)
  d.close()
  release('after close')
  await new Promise(resolve => setImmediate(resolve))
  t.same(dErrors, [], 'a closed client drops the answer quietly')
})
