import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { MemoryAdapter, MemoryBus, type BrokerHost, type ClusterMessage, type PresenceChange, type PresenceEvent, type WsStabilizerOptions } from '../plugin.ts'
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
    app.get('/r', { websocket: true, config: { ws: { rooms: ['lobby'], presence: true, reconnect: { replay: false }, identify } } }, () => {})
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

/** Two (or more) instances of presenceApp on one MemoryBus. */
async function cluster (t: Test, n: number, options: WsStabilizerOptions = {}): Promise<FastifyInstance[]> {
  const bus = new MemoryBus()
  const apps: FastifyInstance[] = []
  for (let i = 0; i < n; i++) apps.push(await presenceApp(t, { adapter: new MemoryAdapter({ bus }), ...options }))
  return apps
}

/** The next frame of a type, skipping others. */
async function frame (client: TestClient, type: string): Promise<any> {
  for (;;) {
    const f = await client.json()
    if (f.type === type) return f
  }
}

test('over two instances: each sees every user once, each change once, and a user on both leaves with its last connection', async (t) => {
  const [a, b] = await cluster(t, 2)
  const onA = events(a)
  const onB = events(b)
  const alice = await member(a, 'a1', 'alice')
  await frame(alice, 'presence.state')
  const bob = await member(b, 'b1', 'bob')
  t.same(Object.keys((await frame(bob, 'presence.state')).users).sort(), ['alice', 'bob'], 'b knows alice, who is on a')
  t.same(await frame(alice, 'presence.diff'), { type: 'presence.diff', room: 'lobby', joins: { bob: [{ clientId: 'b1', metadata: {} }] }, leaves: {} })
  // alice on b too
  const alice2 = await member(b, 'a2', 'alice')
  await frame(alice2, 'presence.state')
  await frame(alice, 'presence.diff')
  t.same(await frame(bob, 'presence.diff'), { type: 'presence.diff', room: 'lobby', joins: { alice: [{ clientId: 'a2', metadata: {} }] }, leaves: {} }, 'a second device: a diff')
  await alice.close()
  t.same(await frame(bob, 'presence.diff'), { type: 'presence.diff', room: 'lobby', joins: {}, leaves: { alice: [{ clientId: 'a1', metadata: {} }] } })
  await until(async () => (await a.wsManager.presence('lobby')).alice?.length === 1)
  await alice2.close()
  await frame(bob, 'presence.diff')
  await until(async () => (await a.wsManager.presence('lobby')).alice === undefined)
  // the map changes at once; the event comes with the tracker's next flush
  await until(() => onA.length >= 3 && onB.length >= 3, 2000, 'the leave event on each instance')
  for (const seen of [onA, onB]) {
    t.same(seen.map(e => [e.joins.map(u => u.userId), e.leaves.map(u => u.userId)]), [[['alice'], []], [['bob'], []], [[], ['alice']]], 'each instance: each change once')
  }
  t.same(await a.wsManager.presence('lobby'), await b.wsManager.presence('lobby'))
  await bob.close()
})

test('an instance that starts gets the others\' state; one that closes takes its users out', async (t) => {
  const bus = new MemoryBus()
  const a = await presenceApp(t, { adapter: new MemoryAdapter({ bus }) })
  const alice = await member(a, 'a1', 'alice')
  await frame(alice, 'presence.state')
  const b = await presenceApp(t, { adapter: new MemoryAdapter({ bus }) })
  await until(async () => (await b.wsManager.presence('lobby')).alice !== undefined, 2000, 'b to learn of alice')
  const bob = await member(b, 'b1', 'bob')
  t.same(Object.keys((await frame(bob, 'presence.state')).users).sort(), ['alice', 'bob'])
  await frame(alice, 'presence.diff')
  const seen = events(b)
  await a.close()
  await until(() => seen.length > 0, 2000, 'alice to leave on b')
  t.same(seen[0].leaves.map(u => u.userId), ['alice'], 'a plain route: no resume, a close is a leave')
  await bob.close()
})

test('a route without presence: its connections are not in the map and get no presence frames', async (t) => {
  const app = await presenceApp(t)
  const plain = await member(app, 'p1', 'paul', '/plain')
  const alice = await member(app, 'a1', 'alice')
  t.same(Object.keys((await frame(alice, 'presence.state')).users), ['alice'])
  const bob = await member(app, 'b1', 'bob')
  await frame(bob, 'presence.state')
  await frame(alice, 'presence.diff')
  t.ok(await plain.silentFor(50), 'the plain member got nothing')
  t.ok(app.wsManager.leave('p1', 'lobby'))
  t.ok(app.wsManager.join('p1', 'other'))
  t.same(Object.keys(await app.wsManager.presence('lobby')).sort(), ['alice', 'bob'])
  t.same(await app.wsManager.presence('other'), {})
  await plain.close()
  await alice.close()
  await bob.close()
})

test('`fields`: members see only those fields of the metadata; a connection without a user is a user of its own', async (t) => {
  const app = await presenceApp(t)
  const anon = await member(app, 'anon1', undefined, '/some', 'Ann')
  t.same(await anon.json(), { type: 'presence.state', room: 'lobby', users: { anon1: [{ clientId: 'anon1', metadata: { name: 'Ann' } }] } })
  const other = await member(app, 'anon2', undefined, '/some')
  t.same((await other.json()).users.anon2, [{ clientId: 'anon2', metadata: {} }], 'a field the metadata does not have is left out')
  await anon.close()
  await other.close()
})

test('joins and leaves through wsManager: state on entering a room, diff on leaving it, nothing for a room left in the same turn', async (t) => {
  const app = await presenceApp(t)
  const alice = await member(app, 'a1', 'alice')
  await frame(alice, 'presence.state')
  const bob = await member(app, 'b1', 'bob')
  await frame(bob, 'presence.state')
  await frame(alice, 'presence.diff')
  t.ok(app.wsManager.join('a1', 'room2'))
  t.same(await alice.json(), { type: 'presence.state', room: 'room2', users: { alice: [{ clientId: 'a1', metadata: {} }] } })
  t.ok(app.wsManager.join('b1', 'room2'))
  t.same((await bob.json()).type, 'presence.state')
  t.same(await alice.json(), { type: 'presence.diff', room: 'room2', joins: { bob: [{ clientId: 'b1', metadata: {} }] }, leaves: {} })
  t.ok(app.wsManager.leave('b1', 'room2'))
  t.same(await alice.json(), { type: 'presence.diff', room: 'room2', joins: {}, leaves: { bob: [{ clientId: 'b1', metadata: {} }] } })
  t.ok(await bob.silentFor(30), 'who left gets nothing')
  // in and out within one turn: no frame at all
  t.ok(app.wsManager.join('b1', 'room3'))
  t.ok(app.wsManager.leave('b1', 'room3'))
  t.ok(app.wsManager.join('b1', 'room2'))
  t.ok(app.wsManager.leave('b1', 'room2'))
  t.ok(await alice.silentFor(50), 'a join and a leave in one turn cancel out')
  const carol = await member(app, 'c1', 'carol')
  await frame(carol, 'presence.state')
  await frame(alice, 'presence.diff')
  t.ok(app.wsManager.join('c1', 'room2'))
  t.ok(app.wsManager.disconnect('c1'))
  const diff = await alice.json()
  t.same([diff.room, Object.keys(diff.leaves)], ['lobby', ['carol']], 'the lobby saw carol go')
  t.ok(await alice.silentFor(50), 'in room2 and gone in one turn: nothing there')
  t.same(Object.keys((await frame(bob, 'presence.diff')).joins), ['carol'])
  t.same(Object.keys((await frame(bob, 'presence.diff')).leaves), ['carol'])
  t.equal((await carol.closed).code, 1000)
  t.ok(await bob.silentFor(0))
  await alice.close()
  await bob.close()
})

test('`interval`: changes of that long go out as one diff per room', async (t) => {
  const app = await presenceApp(t, { presence: { interval: 40 } })
  const alice = await member(app, 'a1', 'alice')
  await frame(alice, 'presence.state')
  const others = await Promise.all(['b', 'c', 'd', 'e', 'e2'].map(async name => await member(app, name, name.slice(0, 1))))
  const diff = await alice.json()
  t.same(Object.keys(diff.joins).sort(), ['b', 'c', 'd', 'e'], 'five joins, one frame')
  t.same(diff.joins.e.map((m: { clientId: string }) => m.clientId).sort(), ['e', 'e2'], 'both of a user\'s connections')
  t.ok(await alice.silentFor(60))
  for (const other of others) t.same(Object.keys((await other.json()).users).length, 5)
  await Promise.all(others.map(async other => await other.close()))
  const leaves = (await alice.json()).leaves
  t.same(Object.keys(leaves).sort(), ['b', 'c', 'd', 'e'])
  t.same(leaves.e.length, 2)
  await alice.close()
})

test('past `maxMembers` a room\'s members get the user count only, and the map again when it is back under', async (t) => {
  const app = await presenceApp(t, { presence: { maxMembers: 2 } })
  const alice = await member(app, 'a1', 'alice')
  await frame(alice, 'presence.state')
  const bob = await member(app, 'b1', 'bob')
  await frame(bob, 'presence.state')
  await frame(alice, 'presence.diff')
  const carol = await member(app, 'c1', 'carol')
  t.same(await carol.json(), { type: 'presence.state', room: 'lobby', count: 3 })
  t.same(await alice.json(), { type: 'presence.diff', room: 'lobby', count: 3 })
  // a second device of carol: the count did not change, no frame
  const carol2 = await member(app, 'c2', 'carol')
  t.same(await carol2.json(), { type: 'presence.state', room: 'lobby', count: 3 })
  t.ok(await alice.silentFor(40))
  const dave = await member(app, 'd1', 'dave')
  await dave.json()
  t.same(await alice.json(), { type: 'presence.diff', room: 'lobby', count: 4 })
  await dave.close()
  t.same(await alice.json(), { type: 'presence.diff', room: 'lobby', count: 3 })
  await carol.close()
  await carol2.close()
  t.same(await alice.json(), { type: 'presence.diff', room: 'lobby', count: 2 }, 'at the cap: still the count (the map comes back a tenth under it)')
  const erin = await member(app, 'e1', 'erin')
  t.same(await erin.json(), { type: 'presence.state', room: 'lobby', count: 3 })
  await alice.json()
  await erin.close()
  await alice.json()
  await bob.close()
  const state = await alice.json()
  t.same(state.type, 'presence.state', 'well under the cap: the whole map')
  t.same(Object.keys(state.users), ['alice'])
  t.same(Object.keys(await app.wsManager.presence('lobby')), ['alice'])
  await alice.close()
})

test('a presence listener that throws goes to the error listeners; the members get their frames all the same', async (t) => {
  const app = await presenceApp(t)
  const errors: Error[] = []
  app.wsManager.on('error', err => errors.push(err))
  app.wsManager.on('presence', () => { throw new Error('listener bug') })
  const alice = await member(app, 'a1', 'alice')
  await frame(alice, 'presence.state')
  const bob = await member(app, 'b1', 'bob')
  await frame(alice, 'presence.diff')
  t.same(errors.map(e => e.message), ['listener bug', 'listener bug'])
  await alice.close()
  await bob.close()
})

const SECRET = 'presence-resume-secret-0123456789'

test('a connection that drops and resumes on another instance within maxDisconnect is neither a leave nor a join', async (t) => {
  const [a, b] = await cluster(t, 2, { reconnect: { secret: SECRET, maxDisconnect: 2000 } })
  const seen = events(b)
  const bob = await member(b, 'b1', 'bob')
  await frame(bob, 'presence.state')
  const alice = await member(a, 'a1', 'alice', '/r')
  const welcome = await frame(alice, 'welcome')
  await frame(alice, 'presence.state')
  await frame(bob, 'presence.diff')
  alice.ws.terminate()
  await until(() => a.wsManager.getConnectionCount() === 0)
  t.ok(await bob.silentFor(50), 'a drop is not a leave')
  // an instance that starts now learns of alice, held, from a
  const c = await presenceApp(t, { adapter: new MemoryAdapter({ bus: (a.wsManager.adapter as MemoryAdapter).bus }), reconnect: { secret: SECRET, maxDisconnect: 2000 } })
  await until(async () => (await c.wsManager.presence('lobby')).alice !== undefined, 2000, 'c to learn of alice')
  const back = await connect(b, `/r?resume=${String(welcome.token)}`)
  t.match(await back.json(), { type: 'welcome', resumed: true })
  t.same(Object.keys((await back.json()).users).sort(), ['alice', 'bob'], 'the state again, on the new instance')
  t.ok(await bob.silentFor(50), 'a resume is not a join')
  t.same(seen.map(e => e.joins.map(u => u.userId)), [['bob'], ['alice']], 'no leave, no second join')
  t.same((await a.wsManager.presence('lobby')).alice, [{ clientId: 'a1', metadata: {} }], 'a knows alice is on b now')
  await back.close()
  t.same(await frame(bob, 'presence.diff'), { type: 'presence.diff', room: 'lobby', joins: {}, leaves: { alice: [{ clientId: 'a1', metadata: {} }] } }, 'a close with 1000 is a leave at once')
  await bob.close()
})

test('a held connection that does not come back leaves after maxDisconnect, on every instance', async (t) => {
  const [a, b] = await cluster(t, 2, { reconnect: { secret: SECRET, maxDisconnect: 100 } })
  const bob = await member(b, 'b1', 'bob')
  await frame(bob, 'presence.state')
  const alice = await member(a, 'a1', 'alice', '/r')
  await frame(alice, 'presence.state')
  await frame(bob, 'presence.diff')
  const onA = events(a)
  const onB = events(b)
  const dropped = Date.now()
  alice.ws.terminate()
  t.same(await frame(bob, 'presence.diff'), { type: 'presence.diff', room: 'lobby', joins: {}, leaves: { alice: [{ clientId: 'a1', metadata: {} }] } })
  t.ok(Date.now() - dropped >= 90, 'not before its time')
  await until(() => onA.length > 0)
  t.same([...onA, ...onB].map(e => e.leaves.map(u => u.userId)), [['alice'], ['alice']])
  await bob.close()
})

test('resumed on the same instance: the held entry is the same user, no frame for the others', async (t) => {
  const app = await presenceApp(t, { reconnect: { secret: SECRET, maxDisconnect: 2000 } })
  const bob = await member(app, 'b1', 'bob')
  await frame(bob, 'presence.state')
  const alice = await member(app, 'a1', 'alice', '/r')
  const welcome = await frame(alice, 'welcome')
  await frame(bob, 'presence.diff')
  alice.ws.terminate()
  await until(() => app.wsManager.getConnectionCount() === 1)
  const back = await connect(app, `/r?resume=${String(welcome.token)}`)
  await frame(back, 'presence.state')
  t.ok(await bob.silentFor(50))
  // the server ends it: not a drop the client will resume from
  app.wsManager.disconnect('a1', 4000, 'bye')
  t.same(Object.keys((await frame(bob, 'presence.diff')).leaves), ['alice'])
  await bob.close()
})

test('fastify.close() holds the connections that may resume elsewhere: they come back on another instance with no leave', async (t) => {
  const bus = new MemoryBus()
  const a = await presenceApp(t, { adapter: new MemoryAdapter({ bus }), reconnect: { secret: SECRET, maxDisconnect: 2000 } })
  const b = await presenceApp(t, { adapter: new MemoryAdapter({ bus }), reconnect: { secret: SECRET, maxDisconnect: 2000 } })
  const bob = await member(b, 'b1', 'bob')
  await frame(bob, 'presence.state')
  const alice = await member(a, 'a1', 'alice', '/r')
  const welcome = await frame(alice, 'welcome')
  await frame(bob, 'presence.diff')
  const seen = events(b)
  await a.close()
  t.equal((await alice.closed).code, 1012)
  const back = await connect(b, `/r?resume=${String(welcome.token)}`)
  t.match(await back.json(), { resumed: true })
  await frame(back, 'presence.state')
  t.ok(await bob.silentFor(50))
  t.same(seen, [], 'no leave, no join')
  await back.close()
  await bob.close()
})

/** A member of the bus that is not an app: it publishes presence changes of an instance `ghost`. */
function ghostOf (bus: MemoryBus, t: Test, id = 'ghost'): (changes: PresenceChange[], sync?: 'ask' | 'answer') => void {
  const ghost = new MemoryAdapter({ bus })
  const received: ClusterMessage[] = []
  ghost.start({ instanceId: id, deliver: message => received.push(message), gap: () => {}, log: undefined as never })
  t.after(() => ghost.close())
  return (changes, sync) => { ghost.publish({ type: 'presence', from: id, changes, sync }) }
}

test('the users of an instance that is gone (its presence expired) leave at the sweep; held ones at their time', async (t) => {
  const bus = new MemoryBus()
  const app = await presenceApp(t, { adapter: new MemoryAdapter({ bus }), presence: { sweep: 20 } })
  const seen = events(app)
  const alice = await member(app, 'a1', 'alice')
  await frame(alice, 'presence.state')
  // the first sweeps cannot list the instances: nobody is taken out then
  const presence = app.wsManager.adapter.presence
  const remoteInstances = presence.remoteInstances.bind(presence)
  let failures = 0
  presence.remoteInstances = async () => {
    if (failures++ < 2) throw new Error('store unreachable')
    return await remoteInstances()
  }
  const ghost = ghostOf(bus, t)
  ghost([['j', 'lobby', 'gus', 'g1', 0, { n: 1 }], ['j', 'lobby', 'hal', 'h1', 0, {}], ['h', 'lobby', 'h1', 0, 150]])
  t.same(await frame(alice, 'presence.diff'), { type: 'presence.diff', room: 'lobby', joins: { gus: [{ clientId: 'g1', metadata: { n: 1 } }], hal: [{ clientId: 'h1', metadata: {} }] }, leaves: {} })
  // the ghost is on the bus but has no presence: it is not a live instance
  t.same(Object.keys((await frame(alice, 'presence.diff')).leaves), ['gus'], 'the sweep took gus out')
  t.ok(failures > 2, 'once the instances could be listed')
  t.same(Object.keys((await frame(alice, 'presence.diff')).leaves), ['hal'], 'hal was held: he went at his time')
  t.same(seen.map(e => [e.joins.map(u => u.userId), e.leaves.map(u => u.userId)]), [[['alice'], []], [['gus', 'hal'], []], [[], ['gus']], [[], ['hal']]])
  await alice.close()
})

test('changes that are not the room\'s entry of a client change nothing; a newer connection of a client wins in any order', async (t) => {
  const bus = new MemoryBus()
  const app = await presenceApp(t, { adapter: new MemoryAdapter({ bus }) })
  const alice = await member(app, 'a1', 'alice')
  await frame(alice, 'presence.state')
  const bob = await member(app, 'b1', 'bob')
  await frame(bob, 'presence.state')
  await frame(alice, 'presence.diff')
  const ghost = ghostOf(bus, t)
  // the ghost's leaves and holds of connections it does not have, or of an older one
  ghost([['l', 'lobby', 'b1', 0], ['h', 'lobby', 'b1', 0, 10], ['l', 'nowhere', 'x', 0]])
  t.ok(await alice.silentFor(50), 'nothing changed')
  // a newer connection of b1 on the ghost: it wins over this instance's
  ghost([['j', 'lobby', 'bob', 'b1', 3, { on: 'ghost' }]])
  t.same(await frame(alice, 'presence.diff'), { type: 'presence.diff', room: 'lobby', joins: { bob: [{ clientId: 'b1', metadata: { on: 'ghost' } }] }, leaves: { bob: [{ clientId: 'b1', metadata: {} }] } })
  ghost([['j', 'lobby', 'bob', 'b1', 2, { older: true }], ['l', 'lobby', 'b1', 2]])
  t.ok(await alice.silentFor(50), 'an older join or leave of it is ignored')
  // this instance's b1 is stale: its leave and join change nothing
  t.ok(app.wsManager.leave('b1', 'lobby'))
  t.ok(app.wsManager.join('b1', 'lobby'))
  t.same(await frame(bob, 'presence.state'), { type: 'presence.state', room: 'lobby', users: { alice: [{ clientId: 'a1', metadata: {} }], bob: [{ clientId: 'b1', metadata: { on: 'ghost' } }] } }, 'it gets the state, with the newer entry')
  ghost([['l', 'lobby', 'b1', 3]])
  t.same(Object.keys((await frame(alice, 'presence.diff')).leaves), ['bob'])
  await bob.close()
  t.ok(await alice.silentFor(50), 'the stale connection\'s end changes nothing')
  t.same(Object.keys(await app.wsManager.presence('lobby')), ['alice'])
  // a held entry of the ghost that the ghost ends early
  ghost([['j', 'lobby', 'kim', 'k1', 0, {}], ['h', 'lobby', 'k1', 0, 5000]])
  t.same(Object.keys((await frame(alice, 'presence.diff')).joins), ['kim'])
  ghost([['l', 'lobby', 'k1', 0]])
  t.same(Object.keys((await frame(alice, 'presence.diff')).leaves), ['kim'])
  await alice.close()
})

test('a stale connection that drops is not held: the newer one elsewhere is the entry', async (t) => {
  const bus = new MemoryBus()
  const app = await presenceApp(t, { adapter: new MemoryAdapter({ bus }), reconnect: { secret: SECRET, maxDisconnect: 2000 } })
  const alice = await member(app, 'a1', 'alice')
  await frame(alice, 'presence.state')
  const carol = await member(app, 'c1', 'carol', '/r')
  await frame(carol, 'presence.state')
  await frame(alice, 'presence.diff')
  const ghost = ghostOf(bus, t)
  ghost([['j', 'lobby', 'carol', 'c1', 1, {}]])
  await until(async () => (await app.wsManager.presence('lobby')).carol?.length === 1)
  carol.ws.terminate()
  await until(() => app.wsManager.getConnectionCount() === 1)
  ghost([['l', 'lobby', 'c1', 1]])
  t.same(Object.keys((await frame(alice, 'presence.diff')).leaves), ['carol'], 'carol leaves when the ghost says so, not held here')
  await alice.close()
})

class GapAdapter extends MemoryAdapter {
  host: BrokerHost | undefined
  override start (host: BrokerHost): void {
    this.host = host
    super.start(host)
  }
}

test('after a gap both sides send their whole state: what was missed is made good', async (t) => {
  const bus = new MemoryBus()
  const adapter = new GapAdapter({ bus })
  const a = await presenceApp(t, { adapter })
  const b = await presenceApp(t, { adapter: new MemoryAdapter({ bus }) })
  const seen = events(b)
  const bob = await member(b, 'b1', 'bob')
  await frame(bob, 'presence.state')
  const carol = await member(a, 'c1', 'carol')
  await frame(bob, 'presence.diff')
  // b hears nothing for a while: alice's join and carol's leave are lost
  const receive = (b.wsManager.adapter as MemoryAdapter).receive
  ;(b.wsManager.adapter as MemoryAdapter).receive = () => {}
  const alice = await member(a, 'a1', 'alice')
  await frame(alice, 'presence.state')
  await carol.close()
  await new Promise(resolve => setTimeout(resolve, 20))
  ;(b.wsManager.adapter as MemoryAdapter).receive = receive
  t.same(Object.keys(await b.wsManager.presence('lobby')).sort(), ['bob', 'carol'], 'b is behind')
  adapter.host!.gap({ downMs: 20, dropped: 2 })
  const diff = await frame(bob, 'presence.diff')
  t.same([Object.keys(diff.joins), Object.keys(diff.leaves)], [['alice'], ['carol']], 'one diff makes it good')
  t.same(Object.keys(await b.wsManager.presence('lobby')).sort(), ['alice', 'bob'])
  t.same(seen.at(-1)!.joins.map(u => u.userId), ['alice'])
  await alice.close()
  await bob.close()
})

test('an app without a presence route sends no presence message at start or after a gap', async (t) => {
  const bus = new MemoryBus()
  const adapter = new GapAdapter({ bus })
  const app = await buildApp(t, { adapter }, app => { app.get('/ws', { websocket: true }, () => {}) })
  const published: ClusterMessage[] = []
  ghostOf(bus, t)
  const publish = adapter.publish.bind(adapter)
  adapter.publish = message => { published.push(message); publish(message) }
  adapter.host!.gap({ downMs: 1, dropped: 0 })
  const client = await connect(app, '/ws')
  await client.close()
  t.same(published, [])
})
