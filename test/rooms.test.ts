import { test } from 'tap'
import { buildInjectedApp, open, roomApp, until } from './helpers.ts'

/* Room membership: joins at connect, by id or on the connection, leave-all on disconnect, empty rooms deleted. */

test('rooms: joined on connect, join and leave by id or connection, events, empty rooms deleted', async (t) => {
  const app = await roomApp(t, {}, buildInjectedApp)
  const m = app.wsManager
  const events: string[] = []
  m.on('join', (conn, room) => events.push(`join ${conn.id} ${room}`))
  m.on('leave', (conn, room) => events.push(`leave ${conn.id} ${room}`))
  const a = await open(app, 'a')
  const b = await open(app, 'b')
  t.same(m.getRooms(), ['all'])
  t.equal(m.join('a', 'dev'), true)
  t.equal(m.join('a', 'dev'), false, 'already in')
  t.equal(m.getConnection('b')!.join('dev'), true)
  t.same(m.getRoomMembers('dev').sort(), ['a', 'b'])
  t.same([...m.getConnection('a')!.rooms].sort(), ['all', 'dev'])
  t.equal(m.leave('a', 'dev'), true)
  t.equal(m.leave('a', 'dev'), false, 'not in')
  t.equal(m.getConnection('b')!.leave('dev'), true)
  t.notOk(m.getRooms().includes('dev'), 'empty room deleted')
  t.same(m.getRoomMembers('dev'), [])
  t.same(events, ['join a dev', 'join b dev', 'leave a dev', 'leave b dev'])
  t.throws(() => m.join('nobody', 'dev'), { code: 'FST_WS_CONNECTION_NOT_FOUND' })
  t.throws(() => m.leave('nobody', 'dev'), { code: 'FST_WS_CONNECTION_NOT_FOUND' })
  t.throws(() => m.join('a', ''), { code: 'FST_WS_ERROR', message: /non-empty string/ })
  m.join('a', 'x')
  m.join('a', 'y')
  await a.close()
  await until(() => m.getConnectionCount() === 1)
  t.same(m.getRooms(), ['all'], 'leave-all on disconnect')
  await b.close()
})
