import { test } from 'tap'
import type { DisconnectInfo } from '../plugin.ts'
import { buildInjectedApp, inject, until } from './helpers.ts'

/* A managed connection's own API: its listeners (and the inbound messages queued until one listens), close, state. */

test('inbound messages sent before the handler listens are queued and delivered in order', async (t) => {
  const got: string[] = []
  const app = await buildInjectedApp(t, {}, app => {
    app.get('/slow', { websocket: true }, async (_s, request) => {
      await new Promise(resolve => setTimeout(resolve, 50))
      request.wsConnection!.on('message', d => got.push(d.toString()))
    })
  })
  const client = await inject(app, '/slow')
  for (let i = 0; i < 5; i++) client.send(`m${i}`)
  await until(() => got.length === 5)
  client.send('m5')
  await until(() => got.length === 6)
  t.same(got, ['m0', 'm1', 'm2', 'm3', 'm4', 'm5'])
  await client.close()
})

test('the inbound queue is bounded: overflow closes with 1008; a raw-socket route is never closed by it', async (t) => {
  const raw: string[] = []
  const app = await buildInjectedApp(t, {}, app => {
    app.get('/deaf', { websocket: true, config: { ws: { limits: { maxQueuedMessages: 3 } } } }, () => {})
    app.get('/raw', { websocket: true, config: { ws: { limits: { maxQueuedMessages: 3 } } } }, (socket) => {
      socket.on('message', d => raw.push(d.toString()))
    })
  })
  const deaf = await inject(app, '/deaf')
  const rawClient = await inject(app, '/raw')
  for (let i = 0; i < 10; i++) {
    deaf.send(`d${i}`)
    rawClient.send(`r${i}`)
  }
  t.equal((await deaf.closed).code, 1008)
  await until(() => raw.length === 10)
  t.equal(rawClient.ws.readyState, 1)
  t.equal(app.wsManager.getStats().disconnectsTotal.queue_overflow, 1)
  await rawClient.close()
})

test('off() removes a listener; close listeners run once with the info', async (t) => {
  const got: string[] = []
  const closes: DisconnectInfo[] = []
  const app = await buildInjectedApp(t, {}, app => {
    app.get('/ws', { websocket: true }, (_s, request) => {
      const conn = request.wsConnection!
      const first = (d: unknown): void => { got.push(`first ${String(d)}`) }
      conn.on('message', first)
      conn.on('message', d => {
        got.push(`second ${d.toString()}`)
        conn.off('message', first)
      })
      conn.on('close', info => closes.push(info))
    })
  })
  const client = await inject(app, '/ws')
  client.send('1')
  client.send('2')
  await until(() => got.length === 3)
  t.same(got, ['first 1', 'second 1', 'second 2'])
  await client.close()
  await until(() => closes.length === 1)
  t.equal(closes[0].disconnectReason, 'client_close')
})

test('conn.close(code, reason): the client gets that code and reason', async (t) => {
  const app = await buildInjectedApp(t, {}, app => { app.get('/ws', { websocket: true }, (_s, r) => { r.wsConnection!.close(4100, 'go') }) })
  const client = await inject(app, '/ws')
  t.same(await client.closed, { code: 4100, reason: 'go' })
})

test('connection details: off() of close listeners and unknown listeners, close twice, state', async (t) => {
  const calls: string[] = []
  const app = await buildInjectedApp(t, {}, app => {
    app.get('/ws', { websocket: true }, (_s, r) => {
      const conn = r.wsConnection!
      const a = (): void => { calls.push('a') }
      const b = (): void => { calls.push('b') }
      conn.on('close', a).on('close', b).off('close', a).off('close', () => {}).off('message', () => {})
      t.equal(conn.state, 'open')
      conn.close(4000, 'first')
      conn.close(4001, 'second')
      t.equal(conn.state, 'closed')
    })
  })
  const client = await inject(app, '/ws')
  t.same(await client.closed, { code: 4000, reason: 'first' })
  t.same(calls, ['b'])
})

test('queued messages wait for a listener that stays: one added and removed before the flush does not take them', async (t) => {
  const got: string[] = []
  const app = await buildInjectedApp(t, {}, app => {
    app.get('/ws', { websocket: true }, async (_s, r) => {
      const conn = r.wsConnection!
      await new Promise(resolve => setTimeout(resolve, 30))
      const passing = (): void => { got.push('passing') }
      conn.on('message', passing)
      conn.off('message', passing)
      await new Promise(resolve => setTimeout(resolve, 10))
      conn.on('message', d => got.push(d.toString()))
    })
  })
  const client = await inject(app, '/ws')
  client.send('one')
  client.send('two')
  await until(() => got.length === 2)
  t.same(got, ['one', 'two'])
  await client.close()
})
