import { test } from 'tap'
import type { Socket } from 'node:net'
import { StabilizerClient } from '../lib/client/index.ts'
import { buildApp, until, urlOf } from './helpers.ts'

/*
 * Node 22 and later have a WebSocket of their own (undici's), as browsers do: the client
 * needs no `ws` there. This runs the client on it, with no `WebSocket` option, against
 * the real plugin: the welcome, text, binary and JSON both ways, the message-mode
 * heartbeat, a drop and a resume with the missed messages, and the close. On Node 20
 * (no global WebSocket without a flag) there is nothing to test.
 */

const nodeMajor = Number(process.versions.node.split('.')[0])
const hasGlobal = typeof (globalThis as { WebSocket?: unknown }).WebSocket === 'function'

test('on Node 22+ the client runs on Node\'s own WebSocket, no ws: messages both ways, heartbeat, drop and resume, close', {
  skip: hasGlobal ? false : `Node ${process.versions.node} has no global WebSocket (Node 22 and later do); CI runs this on Node 24`
}, async (t) => {
  t.ok(nodeMajor >= 22, 'a global WebSocket means Node 22 or later')
  const got: string[] = []
  const app = await buildApp(t, { heartbeat: { mode: 'message', interval: 40, timeout: 2000 }, reconnect: { secret: 'node-websocket-secret-0123456789' } }, app => {
    app.get('/ws', { websocket: true, config: { ws: { reconnect: true } } }, (_socket, request) => {
      const conn = request.wsConnection!
      conn.join('news')
      conn.on('message', (data, isBinary) => {
        got.push(isBinary ? `bytes:${[...data as Buffer].join(',')}` : data.toString())
      })
    })
  })
  const client = new StabilizerClient(urlOf(app, '/ws'), { protocol: 'stabilizer', reconnect: { initialDelay: 30 }, heartbeat: { interval: 30, timeout: 2000 } })
  t.teardown(() => client.close())
  const messages: unknown[] = []
  client.on('message', m => messages.push(m))
  await client.connect()
  t.equal(client.state, 'open')
  t.type(client.clientId, 'string', 'the welcome came')
  const id = client.clientId!

  client.send('text')
  client.send(new Uint8Array([1, 2, 3]))
  client.send({ json: true })
  await until(() => got.length === 3)
  t.same(got, ['text', 'bytes:1,2,3', '{"json":true}'])

  await app.wsManager.broadcast({ n: 1 }, { room: 'news' })
  await app.wsManager.broadcast(Buffer.from([9, 8]), { room: 'news' })
  await until(() => messages.length === 2)
  t.same(messages, [{ n: 1 }, new Uint8Array([9, 8])], 'JSON and bytes, unwrapped')

  await until(() => client.latency !== undefined, 2000, 'a heartbeat round trip')
  t.ok(client.latency! >= 0, 'the server\'s pings answered, its pong measured')

  const resumed = new Promise(resolve => client.once('resumed', resolve))
  for (const conn of app.wsManager.connections()) (conn.socket as unknown as { _socket: Socket })._socket.destroy()
  await until(() => app.wsManager.getConnectionCount() === 0)
  await app.wsManager.broadcast('missed', { room: 'news' })
  t.same(await resumed, { replayed: 1 })
  await until(() => messages.length === 3)
  t.same(messages[2], 'missed', 'the missed message, once')
  t.equal(client.clientId, id, 'the same session')

  const closed = new Promise(resolve => app.wsManager.once('disconnect', (_conn, info) => resolve(info)))
  client.close(4000, 'done')
  t.match(await closed, { code: 4000, reason: 'done' })
  t.equal(client.state, 'closed')
})
