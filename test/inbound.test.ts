import { test } from 'tap'
import { Type } from '@sinclair/typebox'
import type { FastifyInstance } from 'fastify'
import WebSocket from 'ws'
import { defineMessages, type DisconnectInfo, type RouteWsOptions, type WsStabilizerOptions } from '../plugin.ts'
import { buildApp, buildInjectedApp, connect, inject, until, urlOf } from './helpers.ts'

interface ErrorFrame { type: 'error', code: string, message: string, id?: unknown, retryAfterMs?: number }

async function app (t: Parameters<typeof buildApp>[0], ws: RouteWsOptions, options: WsStabilizerOptions = {}): Promise<FastifyInstance> {
  return await buildApp(t, options, server => {
    server.get('/ws', { websocket: true, config: { ws } }, (_socket, request) => {
      request.wsConnection!.on('message', data => { request.wsConnection!.send(`echo ${data.toString()}`) })
    })
  })
}

function ends (server: FastifyInstance): DisconnectInfo[] {
  const seen: DisconnectInfo[] = []
  server.wsManager.on('disconnect', (_c, info) => seen.push(info))
  return seen
}

test('rate limit: over the bucket a message is dropped with RATE_LIMITED and retryAfterMs; persistent abuse closes with 4429', async (t) => {
  const server = await app(t, { rateLimit: { messagesPerSecond: 5, burst: 3, maxViolations: 4 } })
  const ended = ends(server)
  const client = await connect(server, '/ws')
  for (let i = 0; i < 3; i++) client.send(`m${i}`)
  for (let i = 0; i < 3; i++) t.equal(await client.next(), `echo m${i}`, 'the burst passes')
  client.send('one too many')
  const error = await client.json<ErrorFrame>()
  t.match(error, { type: 'error', code: 'RATE_LIMITED' })
  t.ok(error.retryAfterMs! > 0 && error.retryAfterMs! <= 200, `retry after ${error.retryAfterMs} ms`)
  for (let i = 0; i < 4; i++) client.send('flood')
  t.equal((await client.closed).code, 4429)
  await until(() => ended.length === 1)
  t.match(ended[0], { disconnectReason: 'rate_limited' })
  t.equal(server.wsManager.getStats().inboundRejectedTotal.RATE_LIMITED, 5)
})

test('rate limit by bytes: a big message over the byte budget is refused; the bucket refills with time', async (t) => {
  const server = await app(t, { rateLimit: { bytesPerSecond: 1000 } })
  const client = await connect(server, '/ws')
  client.send('x'.repeat(900))
  t.equal((await client.next()).length, 905)
  client.send('y'.repeat(900))
  t.match(await client.json<ErrorFrame>(), { code: 'RATE_LIMITED' })
  await new Promise(resolve => setTimeout(resolve, 150))
  client.send('z'.repeat(200))
  t.equal((await client.next()).length, 205, 'refilled: 100 bytes were left, 150 ms brought about 150 more')
  await client.close()
})

const Chat = Type.Object({ text: Type.String({ maxLength: 20 }), room: Type.Optional(Type.String()) })

test('the message router: typed data, answers by id, error frames with stable codes, violations close with 1008', async (t) => {
  const seen: unknown[] = []
  const server = await app(t, {
    rateLimit: { maxViolations: 6 },
    messages: defineMessages({
      chat: {
        schema: Chat,
        handler: (data, { conn }) => {
          seen.push(data.text.toUpperCase())
          conn.send({ said: data.text })
          return { ok: true }
        }
      },
      slow: { rateLimit: { messagesPerSecond: 1 }, handler: async () => await Promise.resolve('later') },
      boom: { handler: () => { throw new Error('handler broke') } },
      reject: { handler: async () => { throw new Error('async handler broke') } },
      quiet: { handler: () => undefined }
    })
  })
  const ended = ends(server)
  const errors: Error[] = []
  server.wsManager.on('error', err => errors.push(err))
  const client = await connect(server, '/ws')

  client.send({ type: 'chat', id: 1, data: { text: 'hello' } })
  t.same(await client.json(), { said: 'hello' })
  t.same(await client.json(), { type: 'chat.result', id: 1, data: { ok: true } })
  t.same(seen, ['HELLO'])
  client.send({ type: 'chat', data: { text: 'no id' } })
  t.same(await client.json(), { said: 'no id' })
  client.send({ type: 'slow', id: 'a' })
  t.same(await client.json(), { type: 'slow.result', id: 'a', data: 'later' })
  client.send({ type: 'quiet', id: 2 })
  t.same(await client.json(), { type: 'quiet.result', id: 2, data: null }, 'a handler that returns nothing answers null to a message with an id')
  client.send({ type: 'quiet' })

  const expect = async (frame: unknown, code: string, id?: unknown): Promise<void> => {
    client.send(frame as object)
    const error = await client.json<ErrorFrame>()
    t.match(error, { type: 'error', code }, code)
    if (id !== undefined) t.equal(error.id, id)
  }
  await expect('not json', 'INVALID_JSON')
  await expect({ no: 'type' }, 'INVALID_MESSAGE')
  await expect({ type: 'nope', id: 3 }, 'UNKNOWN_TYPE', 3)
  await expect({ type: 'chat', id: 4, data: { text: 'x'.repeat(50) } }, 'VALIDATION_FAILED', 4)
  await expect({ type: 'slow', id: 5 }, 'RATE_LIMITED', 5)
  client.send(Buffer.from([1, 2]))
  t.match(await client.json<ErrorFrame>(), { code: 'BINARY_NOT_ALLOWED' })
  await expect({ type: 'boom', id: 6 }, 'INTERNAL', 6)
  await expect({ type: 'reject', id: 7 }, 'INTERNAL', 7)
  client.send({ type: 'boom' })
  t.same(await client.json(), { type: 'error', code: 'INTERNAL', message: 'the handler failed' }, 'no id, none in the answer')
  t.match(errors.map(e => e.message), ['handler broke', 'async handler broke', 'handler broke'], 'handler errors are reported, the connection stays')
  t.equal(server.wsManager.getConnectionCount(), 1)

  client.send('still not json')
  t.match(await client.json<ErrorFrame>(), { code: 'INVALID_JSON' })
  t.equal((await client.closed).code, 1008, 'the seventh violation closes')
  await until(() => ended.length === 1)
  t.match(ended[0], { disconnectReason: 'invalid_messages' })
})

test('message definitions are checked when the route is added', async (t) => {
  const bad: Array<[unknown, RegExp]> = [
    [5, /config\.ws\.messages` to be an object/],
    [{ chat: {} }, /config\.ws\.messages\.chat\.handler` to be a function/],
    [{ chat: { handler: () => {}, rateLimit: { messagesPerSecond: 0 } } }, /messages\.chat\.rateLimit\.messagesPerSecond` to be a positive number/]
  ]
  for (const [messages, message] of bad) {
    const Fastify = (await import('fastify')).default
    const wsStabilizer = (await import('../plugin.ts')).default
    const server = Fastify()
    await server.register(wsStabilizer)
    t.throws(() => server.get('/ws', { websocket: true, config: { ws: { messages: messages as never } } }, () => {}), { code: 'FST_WS_INVALID_ROUTE_OPTIONS', message })
    await server.close()
  }
})

test('a router that is never closed by accident: an answer to a client that left is not sent', async (t) => {
  let release: () => void = () => {}
  const server = await app(t, { messages: { wait: { handler: async () => { await new Promise<void>(resolve => { release = resolve }); return 'late' } } } })
  const ws = new WebSocket(urlOf(server, '/ws'))
  await new Promise(resolve => ws.once('open', resolve))
  ws.send(JSON.stringify({ type: 'wait', id: 1 }))
  await until(() => server.wsManager.getConnectionCount() === 1)
  await new Promise(resolve => setTimeout(resolve, 20))
  ws.terminate()
  await until(() => server.wsManager.getConnectionCount() === 0)
  release()
  await new Promise(resolve => setTimeout(resolve, 10))
  t.pass('nothing thrown')
})

test('sizes are counted whatever binaryType the route chose', async (t) => {
  const app = await buildInjectedApp(t, { limits: { maxMessageSize: 10 } }, app => {
    app.get('/ab', { websocket: true }, (socket, r) => { socket.binaryType = 'arraybuffer'; r.wsConnection!.on('message', () => {}) })
    app.get('/frag', { websocket: true }, (socket, r) => { socket.binaryType = 'fragments'; r.wsConnection!.on('message', () => {}) })
  })
  const ab = await inject(app, '/ab')
  const frag = await inject(app, '/frag')
  ab.send(Buffer.from([1, 2, 3]))
  frag.send(Buffer.from([1, 2, 3, 4]))
  await until(() => app.wsManager.getStats().bytesIn === 7)
  frag.send(Buffer.alloc(11))
  t.equal((await frag.closed).code, 1009, 'the size limit holds for fragments too')
  await ab.close()
})
