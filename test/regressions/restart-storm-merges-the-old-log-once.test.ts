import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { MemoryAdapter, MemoryBus } from '../../plugin.ts'
import { buildApp, connect, until, type TestClient } from '../helpers.ts'

/*
 * Defect: a client that resumed on another instance had what it missed of the old log logged
 * again on the new one, addressed to it alone: 50 clients of a stopped instance that missed 3
 * messages each added 150 entries to a log of 40, which evicted what the later resumes needed,
 * and they failed with `gap`. Now the clients that left at the same point share one merge of
 * those entries.
 */

interface Welcome { type: 'welcome', clientId: string, token: string, offset: number, resumed: boolean, replayed?: number, resumeFailed?: string }
interface Frame { type: 'message', offset?: number, data: { n: number | string } }

const SECRET = 'restart-storm-secret-0123456789'
const CLIENTS = 50
const LOG = 40
const DIRECT = 25

async function instance (t: Parameters<typeof buildApp>[0], bus: MemoryBus): Promise<FastifyInstance> {
  return await buildApp(t, { adapter: new MemoryAdapter({ bus }), reconnect: { secret: SECRET, replayMessages: LOG } }, app => {
    app.get('/ws', { websocket: true, config: { ws: { reconnect: true } } }, () => {})
  })
}

function dropTcp (client: TestClient): void {
  (client.ws as unknown as { _socket: { destroy (): void } })._socket.destroy()
}

test('50 clients of one instance resume on another with a log of 40: none gets gap, each gets what it missed once, and a drop during the replay loses nothing', async (t) => {
  const bus = new MemoryBus()
  const a = await instance(t, bus)
  const b = await instance(t, bus)

  // a client on b all along, to check that it never gets a merge's entries
  const native = await connect(b, '/ws')
  const nativeWelcome = await native.json<Welcome>()

  const clients: Array<{ welcome: Welcome, offset: number }> = []
  const sockets: TestClient[] = []
  for (let i = 0; i < CLIENTS; i++) {
    const client = await connect(a, '/ws')
    sockets.push(client)
    clients.push({ welcome: await client.json<Welcome>(), offset: 0 })
  }
  await a.wsManager.broadcast({ n: 0 })
  for (let i = 0; i < CLIENTS; i++) clients[i].offset = (await sockets[i].json<Frame>()).offset!
  for (const client of sockets) dropTcp(client)
  await until(() => a.wsManager.getConnectionCount() === 0)
  // missed: two from the instance they left, one from the one they resume on
  await a.wsManager.broadcast({ n: 1 })
  await a.wsManager.broadcast({ n: 2 })
  // and one of them a message of its own: it cannot share the others' merge
  a.wsManager.send(clients[DIRECT].welcome.clientId, { n: 'direct' })
  await b.wsManager.broadcast({ n: 3 })
  await new Promise(resolve => setImmediate(resolve))
  // b took its own broadcast before a's two came over the bus: any order, the last one before the merges
  const live: Frame[] = []
  for (let i = 0; i < 4; i++) live.push(await native.json<Frame>())
  t.same(live.map(f => f.data.n).sort(), [0, 1, 2, 3])
  const beforeMerges = live[3]

  const failed: string[] = []
  const back: TestClient[] = []
  const resumed: Welcome[] = []
  for (const [i, { welcome, offset }] of clients.entries()) {
    const client = await connect(b, `/ws?resume=${welcome.token}&offset=${offset}`)
    back.push(client)
    const w = await client.json<Welcome>()
    resumed.push(w)
    if (w.resumeFailed !== undefined) failed.push(w.resumeFailed)
    const expected = i === DIRECT ? [{ n: 1 }, { n: 2 }, { n: 'direct' }, { n: 3 }] : [{ n: 1 }, { n: 2 }, { n: 3 }]
    const got: unknown[] = []
    for (let j = 0; j < expected.length; j++) got.push((await client.json<Frame>()).data)
    t.same(got, expected)
  }
  t.same(failed, [], 'no resume failed')
  t.ok(resumed.every((w, i) => w.resumed && w.replayed === (i === DIRECT ? 4 : 3)), 'all resumed with what they missed')
  t.ok(resumed.slice(0, DIRECT).every(w => w.offset === resumed[0].offset), 'those before it at one merge')
  t.not(resumed[DIRECT].offset, resumed[0].offset, 'the one with a message of its own at a merge of its own')
  t.ok(resumed.slice(DIRECT + 1).every(w => w.offset === resumed[DIRECT].offset), 'the later ones share its merge: what they replay there is what they missed')

  // the last one drops before it has read its replay: back on b from the merge's marker, and from its middle
  await b.wsManager.broadcast({ n: 4 })
  for (const client of back) t.same((await client.json<Frame>()).data, { n: 4 }, 'live traffic after the replay')
  const first = resumed[0]
  dropTcp(back[0])
  dropTcp(back[1])
  await until(() => b.wsManager.getConnectionCount() === CLIENTS - 1)
  const fromMarker = await connect(b, `/ws?resume=${first.token}&offset=${first.offset}`)
  t.match(await fromMarker.json<Welcome>(), { resumed: true, replayed: 4 })
  const got: unknown[] = []
  for (let i = 0; i < 4; i++) got.push((await fromMarker.json<Frame>()).data)
  t.same(got, [{ n: 1 }, { n: 2 }, { n: 3 }, { n: 4 }], 'the whole merge, then what came after, each once')
  t.ok(await fromMarker.silentFor(30), 'nothing of the other clients')
  const fromMiddle = await connect(b, `/ws?resume=${resumed[1].token}&offset=${first.offset + 2}`)
  t.match(await fromMiddle.json<Welcome>(), { resumed: true, replayed: 2 })
  t.same([(await fromMiddle.json<Frame>()).data, (await fromMiddle.json<Frame>()).data], [{ n: 3 }, { n: 4 }])
  t.ok(await fromMiddle.silentFor(30), 'nothing twice')

  // the client that was on b all along resumes from before the merges: only what b itself took
  t.same((await native.json<Frame>()).data, { n: 4 })
  dropTcp(native)
  await until(() => b.wsManager.getConnectionCount() === CLIENTS)
  const again = await connect(b, `/ws?resume=${nativeWelcome.token}&offset=${beforeMerges.offset!}`)
  t.match(await again.json<Welcome>(), { resumed: true, replayed: 1 })
  t.same((await again.json<Frame>()).data, { n: 4 })
  t.ok(await again.silentFor(30), 'no entry of a merge')

  for (const client of [...back.slice(2), fromMarker, fromMiddle, again]) await client.close()
})
