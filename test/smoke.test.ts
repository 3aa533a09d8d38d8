import { test } from 'tap'
import { buildApp, connect } from './helpers.ts'

test('a managed route registers the connection before the handler and broadcasts', async (t) => {
  const app = await buildApp(t, {}, app => {
    app.get('/ws', { websocket: true, config: { ws: { rooms: ['lobby'] } } }, (_socket, request) => {
      const conn = request.wsConnection!
      t.equal(app.wsManager.getConnection(conn.id), conn)
      conn.on('message', data => { app.wsManager.broadcast(data.toString(), { room: 'lobby' }).catch(t.error) })
    })
  })
  const a = await connect(app, '/ws')
  const b = await connect(app, '/ws')
  a.send('hello')
  t.equal(await a.next(), 'hello')
  t.equal(await b.next(), 'hello')
  t.equal(app.wsManager.getConnectionCount(), 2)
  t.same(app.wsManager.getRooms(), ['lobby'])
  await a.close()
  await b.close()
})
