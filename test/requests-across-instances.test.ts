import { test } from 'tap'
import WebSocket from 'ws'
import type { FastifyInstance } from 'fastify'
import { defineMessages, MemoryAdapter, MemoryBus, type WsAdapter } from '../plugin.ts'
import { RedisAdapter } from '../lib/adapters/redis.ts'
import { StabilizerClient, type ClientOptions } from '../lib/client/index.ts'
import { buildApp, connect, until, urlOf } from './helpers.ts'
import { redisAvailable, startRedis } from './redis-server.ts'

/*
 * Requests both ways when the client resumes on another instance: a server request's id names
 * the instance that made it, so the answer the client gives on the instance it resumed on is
 * forwarded over the adapter and settles the request where it waits; an answer to the client's
 * own request that the first instance writes after the client left goes to the other
 * instances too, and reaches the client where it is now.
 */

const SECRET = 'requests-across-instances-secret'
const skip = !redisAvailable() && 'redis-server is not installed'

type Tap = Parameters<typeof buildApp>[0] & { teardown (fn: () => unknown): void }

interface Instance { app: FastifyInstance, port: number, release: (answer: string) => void, asked: () => boolean }

async function instance (t: Tap, adapter: WsAdapter): Promise<Instance> {
  let release: ((answer: string) => void) | undefined
  const messages = defineMessages({
    // answers when the test says so
    slow: { handler: async () => await new Promise<string>(resolve => { release = resolve }) }
  })
  const app = await buildApp(t, { adapter, reconnect: { secret: SECRET }, requests: { timeout: 5000 } }, app => {
    app.get('/ws', { websocket: true, config: { ws: { reconnect: { maxDisconnect: 60_000 }, messages } } }, () => {})
  })
  const port = Number(new URL(urlOf(app, '/')).port)
  return { app, port, release: answer => release!(answer), asked: () => release !== undefined }
}

/** A client whose next connection goes to the port `to.port` names at that moment. */
function client (t: Tap, first: Instance, to: { port: number }): StabilizerClient {
  class Switch extends WebSocket {
    constructor (url: string, protocols?: string | string[]) {
      super(url.replace(/:\d+\//, `:${to.port}/`), protocols)
    }
  }
  const c = new StabilizerClient(urlOf(first.app, '/ws'), { WebSocket: Switch as unknown as ClientOptions['WebSocket'], reconnect: { initialDelay: 10 }, random: () => 0.5, requestTimeout: 4000 })
  t.teardown(() => c.close())
  return c
}

async function moveToB (c: StabilizerClient, a: Instance, b: Instance, to: { port: number }): Promise<void> {
  const resumed = new Promise((resolve, reject) => {
    c.once('resumed', resolve)
    c.once('resumeFailed', info => reject(new Error(`resume failed: ${info.reason}`)))
  })
  to.port = b.port
  a.app.wsManager.connections().next().value!.socket.terminate()
  await resumed
  await until(() => b.app.wsManager.getConnectionCount() === 1)
}

async function pair (t: Tap, adapters: () => WsAdapter): Promise<[Instance, Instance]> {
  return [await instance(t, adapters()), await instance(t, adapters())]
}

function scenarios (name: string, adapters: (t: Tap) => Promise<() => WsAdapter>, options: { skip?: string | false } = {}): void {
  test(`${name}: a server request answered after the client resumed on another instance settles where it waits`, options, async (t) => {
    const [a, b] = await pair(t, await adapters(t))
    const to = { port: a.port }
    const c = client(t, a, to)
    let answer!: (value: unknown) => void
    const asked: string[] = []
    c.handle('confirm', async (data) => {
      asked.push(JSON.stringify(data))
      return await new Promise(resolve => { answer = resolve })
    })
    await c.connect()
    const conn = a.app.wsManager.connections().next().value!
    t.match(conn.id, /./)
    const confirmed = conn.request('confirm', { n: 1 })
    await until(() => asked.length === 1, 2000, 'the client is asked')
    await moveToB(c, a, b, to)
    answer({ yes: true })
    t.same(await confirmed, { yes: true }, 'the answer given on B settles the request on A')
    t.same(asked, ['{"n":1}'], 'asked once')
    t.notOk(b.app.wsManager.getStats().inboundRejectedTotal.UNKNOWN_REQUEST, 'B did not refuse it as unknown')

    // a refusal goes the same way, with its code
    const back = new Promise(resolve => c.once('resumed', resolve))
    to.port = a.port
    b.app.wsManager.connections().next().value!.socket.terminate()
    await back
    await until(() => a.app.wsManager.getConnectionCount() === 1)
    const onA = a.app.wsManager.connections().next().value!
    let release!: () => void
    let heard = false
    const gate = new Promise<void>(resolve => { release = resolve })
    c.handle('later', async () => {
      heard = true
      await gate
      throw Object.assign(new Error('no'), { code: 'DECLINED' })
    })
    const refused = onA.request('later', null)
    await until(() => heard, 2000, 'the client is asked again')
    await moveToB(c, a, b, to)
    release()
    await t.rejects(refused, { code: 'FST_WS_REQUEST_FAILED', clientCode: 'DECLINED' }, 'the refusal, forwarded with its code')
  })

  test(`${name}: an answer to the client's request that its first instance writes after the client left reaches it on the other`, options, async (t) => {
    const [a, b] = await pair(t, await adapters(t))
    const to = { port: a.port }
    const c = client(t, a, to)
    await c.connect()
    const answered = c.request('slow', null)
    await until(() => a.asked() && c.unacknowledged === 0, 2000, 'A has the request, acknowledged')
    await moveToB(c, a, b, to)
    a.release('from A')
    t.equal(await answered, 'from A', 'the answer A wrote after the client left, delivered by B')
    t.notOk(b.asked(), 'B never handled it')
  })
}

scenarios('memory bus', async () => {
  const bus = new MemoryBus()
  return () => new MemoryAdapter({ bus })
})

scenarios('Redis', async (t) => {
  const redis = await startRedis(t)
  return () => new RedisAdapter({ url: redis.url, prefix: 'rq', presenceTtl: 300 })
}, { skip })

test('an answer naming another instance on a connection that never resumed is an unknown request there', async (t) => {
  const { app } = await instance(t, new MemoryAdapter())
  const raw = await connect(app, '/ws')
  await raw.json()
  const id = 's:00000000-0000-4000-8000-000000000000:1'
  raw.send({ type: 'response', id, data: 1 })
  t.match(await raw.json(), { type: 'error', code: 'UNKNOWN_REQUEST', id })
  const mine = app.wsManager.connections().next().value!
  const pending = mine.request('q', null, { timeout: 50 })
  const { id: ownId } = await raw.json<{ id: string }>()
  t.match(ownId, new RegExp(`^s:${app.wsManager.instanceId}:\\d+$`), 'ids name the instance')
  await t.rejects(pending, { code: 'FST_WS_REQUEST_TIMEOUT' })
})

test('a forwarded answer is checked where the request waits: another client\'s, or one that does not parse, settles nothing', async (t) => {
  const bus = new MemoryBus()
  const a = await instance(t, new MemoryAdapter({ bus }))
  const other = new MemoryAdapter({ bus })
  await instance(t, other)
  const raw = await connect(a.app, '/ws')
  await raw.json()
  const conn = a.app.wsManager.connections().next().value!
  let settled = false
  const pending = conn.request('q', null, { timeout: 100 }).finally(() => { settled = true })
  const { id } = await raw.json<{ id: string }>()
  const forward = (clientId: string, data: string): void => { other.publish({ type: 'answer', instance: a.app.wsManager.instanceId, clientId, data: Buffer.from(data) }) }
  forward('someone-else', `{"type":"response","id":"${id}","data":1}`)
  forward(conn.id, '{"type":"response" broken')
  forward(conn.id, '{"type":"response","id":7}')
  forward(conn.id, `{"type":"response","id":"s:${a.app.wsManager.instanceId}:99","data":1}`)
  other.publish({ type: 'answer', instance: 'another-instance', clientId: conn.id, data: Buffer.from(`{"type":"response","id":"${id}","data":1}`) })
  await new Promise(resolve => setTimeout(resolve, 20))
  t.notOk(settled, 'still waiting')
  await t.rejects(pending, { code: 'FST_WS_REQUEST_TIMEOUT' }, 'and times out')
})
