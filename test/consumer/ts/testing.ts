/* An app's own test, as a user writes it with node:test and the /testing entry point. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import Fastify from 'fastify'
import wsStabilizer, { wsConnectionOf } from 'fastify-websocket-stabilizer'
import { wsTesting, TestingTimeoutError, type CloseInfo, type Envelope, type Frame, type WelcomeFrame } from 'fastify-websocket-stabilizer/testing'

type In = { type: 'price', symbol: string, price: number } | { type: 'news', text: string }
interface Order { symbol: string, qty: number }

test('the feed', async (t) => {
  const app = Fastify()
  await app.register(wsStabilizer, { heartbeat: { enabled: false } })
  app.get('/feed', { websocket: true, config: { ws: { reconnect: true } } }, (_socket, request) => {
    const conn = wsConnectionOf(request)
    conn.send({ type: 'price', symbol: 'X', price: 1 })
  })
  t.after(() => app.close())

  const ws = wsTesting(app, { test: t, timeout: 500 })
  const client = await ws.connect<In, Order>('/feed', { headers: { origin: 'https://example.com' }, answerPings: true })
  const welcome: WelcomeFrame = await client.welcome()
  const price = await client.json({ type: 'price' })
  const symbol: string = price.symbol
  // @ts-expect-error: a price has no text
  assert.equal(price.text, undefined)
  // @ts-expect-error: no message of In has this type
  await client.json({ type: 'nope' })
  const envelope: Envelope<In> = await client.envelope()
  const frame: Frame = await client.next()
  client.send({ symbol, qty: 1 })
  // @ts-expect-error: an Order needs a qty
  client.send({ symbol })
  const closed: CloseInfo = await client.close(1000, 'bye')
  assert.equal(typeof welcome.clientId, 'string')
  assert.ok(envelope && frame && closed)
  await assert.rejects(ws.connect('/nowhere', { timeout: 10 }), (err: unknown) => err instanceof TestingTimeoutError || err instanceof Error)
})
