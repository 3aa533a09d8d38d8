import { test } from 'tap'
import WebSocket from 'ws'
import type { Socket } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { defineMessages, type ManagedConnection } from '../plugin.ts'
import { StabilizerClient } from '../lib/client/index.ts'
import { buildApp, until, urlOf } from './helpers.ts'

/*
 * Requests both ways across a drop, with a client that speaks protocol 2: the exchange's
 * frames (answers, error frames with an id, the server's requests) go through the replay log
 * addressed to that client, so one written while the socket is already gone, or in the
 * moment it goes, comes with the replay after the resume. With protocol 1 an answer written
 * to a closed connection is gone, and the request times out.
 */

type Tap = Parameters<typeof buildApp>[0] & { teardown (fn: () => unknown): void }

function drop (conn: ManagedConnection): void {
  (conn.socket as unknown as { _socket: Socket })._socket.destroy()
}

async function server (t: Tap): Promise<{ app: FastifyInstance, dropped: () => Promise<void> }> {
  let gone!: () => void
  let wait = new Promise<void>(resolve => { gone = resolve })
  const messages = defineMessages({
    // answers only once its connection has gone: the answer is written to a closed connection
    late: {
      handler: async (_data, { conn }) => {
        drop(conn)
        await until(() => !conn.isOpen)
        gone()
        return 'after the drop'
      }
    },
    broken: {
      handler: async (_data, { conn }) => {
        drop(conn)
        await until(() => !conn.isOpen)
        gone()
        throw new Error('failed after the drop')
      }
    }
  })
  const app = await buildApp(t, { reconnect: { secret: 'requests-across-drops-secret-0123' }, requests: { timeout: 5000 } }, app => {
    app.get('/ws', { websocket: true, config: { ws: { reconnect: { maxDisconnect: 60_000 }, messages } } }, () => {})
  })
  const dropped = async (): Promise<void> => {
    await wait
    wait = new Promise<void>(resolve => { gone = resolve })
  }
  return { app, dropped }
}

function client (t: Tap, app: FastifyInstance, protocol?: 'plain'): StabilizerClient {
  const c = new StabilizerClient(urlOf(app, '/ws'), { WebSocket, reconnect: { initialDelay: 20 }, random: () => 0.5, requestTimeout: 1500, protocol })
  t.teardown(() => c.close())
  return c
}

test('protocol 2: an answer written after the drop comes with the replay and settles the request once', async (t) => {
  const { app, dropped } = await server(t)
  const c = client(t, app)
  const messages: unknown[] = []
  c.on('message', data => messages.push(data))
  await c.connect()
  const resumed = new Promise(resolve => c.once('resumed', resolve))
  const answer = c.request('late', null)
  await dropped()
  t.same(await resumed, { replayed: 1 }, 'the answer is the one replayed message')
  t.equal(await answer, 'after the drop')

  const failed = c.request('broken', null)
  await dropped()
  await t.rejects(failed, { code: 'INTERNAL' }, 'an error frame with the id is replayed too')
  t.same(messages, [], 'none of it reached the app as a message')
})

test('a server request written in the moment of a drop is answered once, after the resume', async (t) => {
  const { app } = await server(t)
  const c = client(t, app)
  let asked = 0
  c.handle('confirm', () => { asked++; return 'yes' })
  await c.connect()
  await until(() => app.wsManager.getConnectionCount() === 1)
  const conn = [...app.wsManager.connections()][0]
  const answer = conn.request('confirm', null)
  drop(conn)
  t.equal(await answer, 'yes')
  t.equal(asked, 1, 'the client handled it once')
})

test('protocol 1 (a client that does not number): the late answer is not logged, the resume replays nothing', async (t) => {
  const { app, dropped } = await server(t)
  const first = new WebSocket(urlOf(app, '/ws'))
  const welcome = JSON.parse(String(await new Promise(resolve => first.once('message', resolve)))) as { v: number, token: string, offset: number }
  t.equal(welcome.v, 1)
  first.on('error', () => {})
  first.send(JSON.stringify({ type: 'late', id: 'r1', data: null }))
  await dropped()
  const again = new WebSocket(`${urlOf(app, '/ws')}?resume=${encodeURIComponent(welcome.token)}&offset=${welcome.offset}`)
  t.teardown(() => again.close())
  const frames: string[] = []
  again.on('message', data => frames.push(String(data)))
  await until(() => frames.length > 0)
  const resumed = JSON.parse(frames[0]) as { resumed: boolean, replayed: number }
  t.same({ resumed: resumed.resumed, replayed: resumed.replayed }, { resumed: true, replayed: 0 }, 'resumed, with nothing to replay')
  again.send(JSON.stringify({ type: 'nope', id: 'r2' }))
  await until(() => frames.length > 1)
  t.match(JSON.parse(frames[1]), { type: 'error', code: 'UNKNOWN_TYPE', id: 'r2' }, 'the next frame is the answer to the next message: r1\'s answer never came')
})
