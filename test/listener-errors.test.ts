import { test } from 'tap'
import { Writable } from 'node:stream'
import type { ManagedConnection } from '../plugin.ts'
import { buildInjectedApp, inject, until } from './helpers.ts'

/* Listeners of the app (on a connection, on the manager) that throw or reject: reported as 'error' events or logged, never a crash. */

test('listeners that throw (close, connect, disconnect, even error) never crash the process', async (t) => {
  const lines: Array<{ msg: string }> = []
  const stream = new Writable({ write (chunk, _e, cb) { lines.push(JSON.parse(chunk.toString())); cb() } })
  const app = await buildInjectedApp(t, {}, app => {
    app.get('/ws', { websocket: true }, (_s, r) => { r.wsConnection!.on('close', () => { throw new Error('close listener') }) })
  }, { logger: { level: 'error', stream } })
  const seen: string[] = []
  app.wsManager.on('connect', () => { throw new Error('connect listener') })
  app.wsManager.on('disconnect', () => { throw new Error('disconnect listener') })
  app.wsManager.on('error', err => { seen.push(err.message); throw new Error('error listener') })
  const client = await inject(app, '/ws')
  await client.close()
  await until(() => seen.length === 3)
  t.same(seen, ['connect listener', 'close listener', 'disconnect listener'])
  t.ok(lines.some(l => l.msg === "an 'error' listener threw"))
  t.equal(app.wsManager.getConnectionCount(), 0)
})

test('a listener that throws something that is not an Error is still reported as one', async (t) => {
  const errors: Error[] = []
  const app = await buildInjectedApp(t, {}, app => {
    app.get('/ws', { websocket: true }, (_s, r) => {
      // eslint-disable-next-line no-throw-literal
      r.wsConnection!.on('message', () => { throw 'a string' })
    })
  })
  app.wsManager.on('error', err => errors.push(err))
  const client = await inject(app, '/ws')
  client.send('x')
  await until(() => errors.length === 1)
  t.ok(errors[0] instanceof Error)
  t.equal(errors[0].message, 'a string')
  await client.close()
})

test('a listener that throws or rejects is reported and does not crash; the connection goes on', async (t) => {
  const errors: Array<[Error, ManagedConnection | undefined]> = []
  const app = await buildInjectedApp(t, {}, app => {
    app.get('/ws', { websocket: true }, (_s, request) => {
      const conn = request.wsConnection!
      conn.on('message', d => { if (d.toString() === 'throw') throw new Error('sync boom') })
      conn.on('message', async d => { if (d.toString() === 'reject') throw new Error('async boom') })
      conn.on('message', d => { conn.send(`ok ${d.toString()}`) })
    })
  })
  app.wsManager.on('error', (err, conn) => errors.push([err, conn]))
  const client = await inject(app, '/ws')
  client.send('throw')
  t.equal(await client.next(), 'ok throw', 'the next listener still ran')
  client.send('reject')
  t.equal(await client.next(), 'ok reject')
  await until(() => errors.length === 2)
  t.same(errors.map(([e]) => e.message), ['sync boom', 'async boom'])
  t.ok(errors[0][1]?.id)
  await client.close()
})
