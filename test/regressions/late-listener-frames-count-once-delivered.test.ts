import { test } from 'tap'
import { buildApp, connect, until } from '../helpers.ts'

// Protocol 2: a frame that came before the route's `message` listener is held for it; once the
// listener has it, it counts as delivered, so a resume after a drop acknowledges it (received: 1)
// and the client does not send it again.
test('a frame held for a late message listener counts once the listener had it', async (t) => {
  const got: string[] = []
  const app = await buildApp(t, { reconnect: { secret: 'late-listener-secret-0123456789' } }, app => {
    app.get('/ws', { websocket: true, config: { ws: { reconnect: true } } }, (_socket, request) => {
      const conn = request.wsConnection!
      setTimeout(() => { conn.on('message', data => got.push(data.toString())) }, 30)
    })
  })
  const client = await connect(app, '/ws?v=2')
  const welcome = await client.json()
  t.equal(welcome.v, 2)
  client.send('early')
  await until(() => got.length === 1, 2000, 'the late listener to get the held frame')
  t.same(got, ['early'])
  client.ws.terminate()
  await until(() => app.wsManager.getConnectionCount() === 0)
  const back = await connect(app, `/ws?v=2&resume=${String(welcome.token)}&offset=${String(welcome.offset)}&sent=1`)
  t.match(await back.json(), { type: 'welcome', resumed: true, received: 1 }, 'delivered: acknowledged on the resume')
  await back.close()
})

test('on a plain route the late listener gets the held frames too', async (t) => {
  const got: string[] = []
  const app = await buildApp(t, {}, app => {
    app.get('/plain', { websocket: true }, (_socket, request) => {
      const conn = request.wsConnection!
      setTimeout(() => { conn.on('message', data => got.push(data.toString())) }, 30)
    })
  })
  const client = await connect(app, '/plain')
  client.send('one')
  client.send('two')
  await until(() => got.length === 2, 2000, 'the late listener to get both')
  t.same(got, ['one', 'two'])
  await client.close()
})
