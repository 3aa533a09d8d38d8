import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { MemoryAdapter, MemoryBus } from '../../plugin.ts'
import { buildApp, connect, until, type TestClient } from '../helpers.ts'

/*
 * A client that resumes on B, back on A and on B again, all within a second: B had read a
 * copy of A's log for the first resume and kept it for a second (a reconnect storm reads
 * it once), and that copy ended before the client's new offset on A, so the third resume
 * failed as a `gap`. A copy that ends before the offset is read again.
 */

interface Welcome { clientId: string, token: string, offset: number, resumed: boolean, replayed?: number, resumeFailed?: string }
interface Frame { offset: number, data: unknown }

async function instance (t: Parameters<typeof buildApp>[0], bus: MemoryBus): Promise<FastifyInstance> {
  return await buildApp(t, { adapter: new MemoryAdapter({ bus }), reconnect: { secret: 'back-and-forth-secret-0123456789' } }, app => {
    app.get('/ws', { websocket: true, config: { ws: { reconnect: { replay: true } } } }, () => {})
  })
}

function dropTcp (client: TestClient): void {
  (client.ws as unknown as { _socket: { destroy (): void } })._socket.destroy()
}

test('back and forth between two instances within a second: each resume replays what was missed', async (t) => {
  const bus = new MemoryBus()
  const a = await instance(t, bus)
  const b = await instance(t, bus)
  const instances = [a, b]
  let client = await connect(a, '/ws')
  let welcome = await client.json<Welcome>()
  let offset = welcome.offset
  for (let hop = 1; hop <= 4; hop++) {
    const from = instances[(hop - 1) % 2]
    const to = instances[hop % 2]
    await from.wsManager.broadcast({ hop })
    offset = (await client.json<Frame>()).offset
    dropTcp(client)
    await until(() => from.wsManager.getConnectionCount() === 0)
    await from.wsManager.broadcast({ missed: hop })
    await new Promise(resolve => setImmediate(resolve))
    client = await connect(to, `/ws?resume=${welcome.token}&offset=${offset}`)
    welcome = await client.json<Welcome>()
    t.match(welcome, { resumed: true, replayed: 1 }, `hop ${hop}: resumed`)
    t.notOk(welcome.resumeFailed)
    t.same((await client.json<Frame>()).data, { missed: hop }, `hop ${hop}: the missed message`)
  }
  await client.close()
})
