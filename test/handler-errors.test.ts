import { test } from 'tap'
import { buildApp, connect, until } from './helpers.ts'
import type { DisconnectInfo } from '../plugin.ts'

test('a handler that throws closes only its socket with 1011 and reports the error', async (t) => {
  const errors: Error[] = []
  const infos: DisconnectInfo[] = []
  const app = await buildApp(t, {}, app => {
    app.get('/boom', { websocket: true }, () => { throw new Error('handler exploded') })
    app.get('/ok', { websocket: true }, () => {})
  })
  app.wsManager.on('error', err => errors.push(err))
  app.wsManager.on('disconnect', (_conn, info) => infos.push(info))
  const bystander = await connect(app, '/ok')
  const victim = await connect(app, '/boom')
  const closed = await victim.closed
  t.equal(closed.code, 1011)
  t.equal(infos[0].disconnectReason, 'handler_error')
  t.equal(errors[0].message, 'handler exploded')
  t.equal(app.wsManager.getConnectionCount(), 1)
  const result = await app.wsManager.broadcast('still here')
  t.equal(result.succeeded, 1)
  t.equal(await bystander.next(), 'still here')
  await bystander.close()
})

test('an async handler that rejects closes with 1011 too', async (t) => {
  const app = await buildApp(t, {}, app => {
    app.get('/boom', { websocket: true }, async () => { throw new Error('async exploded') })
  })
  const victim = await connect(app, '/boom')
  t.equal((await victim.closed).code, 1011)
  await until(() => app.wsManager.getConnectionCount() === 0)
  t.equal(app.wsManager.getStats().disconnectsTotal.handler_error, 1)
})

test('a handler error on an unmanaged route terminates that socket (no manager involved)', async (t) => {
  const app = await buildApp(t, {}, app => {
    app.get('/raw', { websocket: true, config: { ws: false } }, () => { throw new Error('raw exploded') })
  })
  const client = await connect(app, '/raw')
  t.equal((await client.closed).code, 1006)
  t.equal(app.wsManager.getStats().connectsTotal, 0)
})
