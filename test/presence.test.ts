import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { MemoryAdapter, MemoryBus, type PresenceEvent, type WsStabilizerOptions } from '../plugin.ts'
import { buildApp, connect, until, type TestClient } from './helpers.ts'

interface Test { after (fn: () => unknown): void }

/**
 * /ws: presence in the room 'lobby' (?id=&user=&name=, name in the metadata); /plain: the
 * same room without presence; /some: presence showing only the metadata field `name`.
 */
async function presenceApp (t: Test, options: WsStabilizerOptions = {}): Promise<FastifyInstance> {
  return await buildApp(t, options, app => {
    const identify = (request: { query: unknown }): { clientId?: string, userId?: string, metadata: Record<string, unknown> } => {
      const q = request.query as { id?: string, user?: string, name?: string }
      return { clientId: q.id, userId: q.user, metadata: q.name === undefined ? {} : { name: q.name, secret: 's' } }
    }
    app.get('/ws', { websocket: true, config: { ws: { rooms: ['lobby'], presence: true, identify } } }, () => {})
    app.get('/plain', { websocket: true, config: { ws: { rooms: ['lobby'], identify } } }, () => {})
    app.get('/some', { websocket: true, config: { ws: { rooms: ['lobby'], presence: { fields: ['name'] }, identify } } }, () => {})
  })
}

const member = async (app: FastifyInstance, id: string, user?: string, path = '/ws', name?: string): Promise<TestClient> =>
  await connect(app, `${path}?id=${id}${user === undefined ? '' : `&user=${user}`}${name === undefined ? '' : `&name=${name}`}`)

const events = (app: FastifyInstance): PresenceEvent[] => {
  const seen: PresenceEvent[] = []
  app.wsManager.on('presence', event => seen.push(event))
  return seen
}

test('a member gets the state, then one diff per change; users join with their first connection and leave with their last', async (t) => {
  const app = await presenceApp(t)
  const seen = events(app)
  const a = await member(app, 'a1', 'alice', '/ws', 'Alice')
  t.same(await a.json(), { type: 'presence.state', room: 'lobby', users: { alice: [{ clientId: 'a1', metadata: { name: 'Alice', secret: 's' } }] } }, 'the state includes the newcomer itself')
  const b = await member(app, 'b1', 'bob')
  t.same(await b.json(), { type: 'presence.state', room: 'lobby', users: { alice: [{ clientId: 'a1', metadata: { name: 'Alice', secret: 's' } }], bob: [{ clientId: 'b1', metadata: {} }] } })
  t.same(await a.json(), { type: 'presence.diff', room: 'lobby', joins: { bob: [{ clientId: 'b1', metadata: {} }] }, leaves: {} }, 'the others get the diff')
  // a second device of bob: a diff, no join
  const b2 = await member(app, 'b2', 'bob')
  await b2.json()
  t.same(await a.json(), { type: 'presence.diff', room: 'lobby', joins: { bob: [{ clientId: 'b2', metadata: {} }] }, leaves: {} })
  t.same((await app.wsManager.presence('lobby')).bob.map(m => m.clientId), ['b1', 'b2'])
  await b.close()
  t.same(await a.json(), { type: 'presence.diff', room: 'lobby', joins: {}, leaves: { bob: [{ clientId: 'b1', metadata: {} }] } })
  await b2.close()
  t.same(await a.json(), { type: 'presence.diff', room: 'lobby', joins: {}, leaves: { bob: [{ clientId: 'b2', metadata: {} }] } })
  t.same(seen.map(e => [e.room, e.joins.map(u => u.userId), e.leaves.map(u => u.userId)]), [
    ['lobby', ['alice'], []], ['lobby', ['bob'], []], ['lobby', [], ['bob']]
  ], 'bob joined once and left once')
  t.same(seen[2].leaves[0].metas, [{ clientId: 'b2', metadata: {} }], 'a leave carries the metas that went')
  t.same(await app.wsManager.presence('lobby'), { alice: [{ clientId: 'a1', metadata: { name: 'Alice', secret: 's' } }] })
  t.same(await app.wsManager.presence('nobody'), {})
  await a.close()
})
