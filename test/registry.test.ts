import { test } from 'tap'
import { Registry } from '../lib/registry.ts'
import { buildInjectedApp, inject, open, roomApp, until } from './helpers.ts'

/* Who is connected: clients, users and their connections, replacement of a duplicate clientId. */

test('registry: clients, users with several connections, lookups', async (t) => {
  const app = await roomApp(t, {}, buildInjectedApp)
  const m = app.wsManager
  const a1 = await open(app, 'a1', 'ann')
  const a2 = await open(app, 'a2', 'ann')
  const b1 = await open(app, 'b1', 'bob')
  const anon = await open(app, 'x')
  t.same(m.getActiveConnections().sort(), ['a1', 'a2', 'b1', 'x'])
  t.equal(m.getConnectionCount(), 4)
  t.same(m.getUserConnections('ann').map(c => c.id).sort(), ['a1', 'a2'])
  t.same(m.getUserConnections('nobody'), [])
  t.ok(m.isUserConnected('bob'))
  t.notOk(m.isUserConnected('nobody'))
  t.same(m.getActiveUsers().sort(), ['ann', 'bob'])
  t.equal([...m.connections()].length, 4)
  const conn = m.getConnection('a1')!
  t.equal(conn.userId, 'ann')
  t.ok(conn.connectedAt instanceof Date)
  t.equal(conn.state, 'open')
  t.equal(m.getConnection('zzz'), undefined)
  await a1.close()
  await until(() => m.getUserConnections('ann').length === 1)
  t.ok(m.isUserConnected('ann'), 'still connected on the other device')
  await a2.close()
  await until(() => !m.isUserConnected('ann'))
  t.same(m.getActiveUsers(), ['bob'])
  await b1.close()
  await anon.close()
})

test('a duplicate clientId replaces the old connection (4001); the old late close never removes the new one', async (t) => {
  const app = await roomApp(t, {}, buildInjectedApp)
  const m = app.wsManager
  const reasons: string[] = []
  m.on('disconnect', (_c, info) => reasons.push(info.disconnectReason))
  const old = await open(app, 'dup', 'ann')
  const oldConn = m.getConnection('dup')!
  oldConn.join('extra')
  const fresh = await open(app, 'dup', 'ann')
  const freshConn = m.getConnection('dup')!
  t.not(freshConn, oldConn)
  t.equal((await old.closed).code, 4001)
  // the old socket's close event has been processed by now: the new one must be untouched
  await until(() => oldConn.socket.readyState === 3)
  await new Promise(resolve => setImmediate(resolve))
  t.equal(m.getConnection('dup'), freshConn)
  t.same(m.getUserConnections('ann'), [freshConn])
  t.same(m.getRoomMembers('all'), ['dup'])
  t.same(m.getRoomMembers('extra'), [], 'the old connection\'s rooms are not inherited')
  t.same(reasons, ['replaced'])
  t.ok(fresh.ws.readyState === 1)
  await fresh.close()
})

test('Registry.remove is identity-checked: another object with the same clientId is not removed', async (t) => {
  const app = await buildInjectedApp(t, {}, app => { app.get('/ws', { websocket: true, config: { ws: { identify: () => ({ clientId: 'same', userId: 'u' }) } } }, () => {}) })
  const client = await inject(app, '/ws')
  const registered = app.wsManager.getConnection('same')!
  const registry = new Registry()
  registry.add(registered)
  const stale = Object.create(registered) as typeof registered
  t.equal(stale.id, 'same')
  t.equal(registry.remove(stale), false)
  t.equal(registry.get('same'), registered)
  t.equal(registry.userConnections('u').size, 1)
  t.equal(registry.remove(registered), true)
  t.equal(registry.size, 0)
  t.equal(registry.userCount, 0)
  await client.close()
})
