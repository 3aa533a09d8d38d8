import { test } from 'tap'
import WebSocket from 'ws'
import type { FastifyInstance } from 'fastify'
import { buildApp, until, urlOf } from './helpers.ts'

/*
 * Protocol 2 on the server, frame by frame with a raw ws client: what counts (and what does
 * not), the header that asks for it, a resume next to a half-open socket, and every bad
 * `sent` a resume can carry: a fresh session with `resumeFailed: "invalid"`, nothing
 * crashes, and a client beside it never notices.
 */

const SECRET = 'upstream-bad-input-secret-012345'

interface Got { text: string, id: string }

async function server (t: Parameters<typeof buildApp>[0]): Promise<{ app: FastifyInstance, got: Got[] }> {
  const got: Got[] = []
  const app = await buildApp(t, { reconnect: { secret: SECRET } }, app => {
    app.get('/ws', { websocket: true, config: { ws: { reconnect: {} } } }, (_socket, request) => {
      const conn = request.wsConnection!
      conn.on('message', data => { got.push({ text: data.toString(), id: conn.id }) })
    })
  })
  return { app, got }
}

/** A raw client that keeps every frame it gets, as JSON. */
class Raw {
  readonly ws: WebSocket
  readonly frames: Array<Record<string, unknown>> = []
  readonly closed: Promise<number>

  constructor (url: string, headers: Record<string, string> = {}) {
    this.ws = new WebSocket(url, { headers })
    this.ws.on('message', data => this.frames.push(JSON.parse(data.toString()) as Record<string, unknown>))
    this.closed = new Promise(resolve => this.ws.once('close', resolve))
  }

  async welcome (): Promise<Record<string, unknown>> {
    await until(() => this.frames.length > 0, 2000, 'the welcome')
    return this.frames[0]
  }

  async acked (n: number): Promise<void> {
    await until(() => this.frames.some(f => f.type === 'ack' && f.received === n), 2000, `an ack of ${n}`)
  }
}

function raw (t: { teardown (fn: () => unknown): void }, url: string, headers?: Record<string, string>): Raw {
  const client = new Raw(url, headers)
  t.teardown(() => client.ws.terminate())
  return client
}

test('what counts: data frames of any kind, not heartbeat-like frames; x-ws-version: 2 asks as v=2 does', async (t) => {
  const { app, got } = await server(t)
  const c = raw(t, urlOf(app, '/ws'), { 'x-ws-version': '2' })
  t.match(await c.welcome(), { v: 2, received: 0 })
  c.ws.send('one')
  c.ws.send(Buffer.from([1, 2, 3]))
  c.ws.send('{"type":"ping"}')
  c.ws.send('{"type":"pong","x":1}')
  c.ws.send(`{"type":"ping","pad":"${'x'.repeat(200)}"}`)
  await until(() => got.length === 5, 2000, 'the messages')
  await c.acked(3)
  t.same(got.map(g => g.text.slice(0, 15)), ['one', '\x01\x02\x03', '{"type":"ping"}', '{"type":"pong",', '{"type":"ping",'], 'in heartbeat mode ping they reach the route as data')
  t.notOk(c.frames.some(f => f.type === 'ack' && f.received !== 3), 'but the short heartbeat-like ones are not counted')
})

test('a resume beside the half-open socket it replaces continues that socket\'s count', async (t) => {
  const { app, got } = await server(t)
  const a = raw(t, urlOf(app, '/ws?v=2'))
  const welcome = await a.welcome()
  for (const m of ['a', 'b', 'c']) a.ws.send(m)
  await until(() => got.length === 3, 2000, 'the messages')
  const b = raw(t, urlOf(app, `/ws?v=2&resume=${welcome.token as string}&offset=0&sent=3`))
  t.match(await b.welcome(), { v: 2, resumed: true, received: 3, clientId: welcome.clientId })
  t.equal(await a.closed, 4001, 'the old socket is replaced')
  b.ws.send('d')
  await b.acked(4)
  t.same(got.map(g => g.text), ['a', 'b', 'c', 'd'])
})

test('bad `sent` on a resume: a fresh session with resumeFailed "invalid"; a client beside it never notices', async (t) => {
  const { app, got } = await server(t)
  const bystander = raw(t, urlOf(app, '/ws?v=2'))
  await bystander.welcome()
  const first = raw(t, urlOf(app, '/ws?v=2'))
  const welcome = await first.welcome()
  for (let i = 0; i < 5; i++) first.ws.send(`f${i}`)
  await first.acked(5)
  first.ws.close()
  await first.closed
  const token = welcome.token as string
  // malformed: refused before the token is looked at, so the same token can try again
  for (const sent of ['abc', '-1', '1e3', '', '1234567890123456', undefined]) {
    const query = sent === undefined ? '' : `&sent=${encodeURIComponent(sent)}`
    const c = raw(t, urlOf(app, `/ws?v=2&resume=${token}&offset=0${query}`))
    t.match(await c.welcome(), { v: 2, resumed: false, resumeFailed: 'invalid', received: 0 }, `sent=${String(sent)}`)
    t.not((await c.welcome()).clientId, welcome.clientId)
    c.ws.terminate()
  }
  // fewer than the server had: the client's count and the server's disagree
  const fewer = raw(t, urlOf(app, `/ws?v=2&resume=${token}&offset=0&sent=4`))
  t.match(await fewer.welcome(), { resumed: false, resumeFailed: 'invalid', received: 0 }, 'sent below what the server had')

  const second = raw(t, urlOf(app, '/ws?v=2'))
  const w2 = await second.welcome()
  second.ws.send('s')
  await second.acked(1)
  second.ws.terminate()
  await second.closed
  await until(() => app.wsManager.getConnection(w2.clientId as string) === undefined, 2000, 'the drop')
  const far = raw(t, urlOf(app, `/ws?v=2&resume=${w2.token as string}&offset=0&sent=${1 + 1_048_577}`))
  t.match(await far.welcome(), { resumed: false, resumeFailed: 'invalid' }, 'out of window: more than MAX_RESEND beyond')

  // the same count in a header; a client of protocol 1 sends none and resumes as before
  const third = raw(t, urlOf(app, '/ws'))
  const w3 = await third.welcome()
  third.ws.send('p1')
  await until(() => got.some(g => g.text === 'p1'), 2000, 'its message')
  third.ws.terminate()
  await until(() => app.wsManager.getConnection(w3.clientId as string) === undefined, 2000, 'the drop')
  const back = raw(t, urlOf(app, '/ws'), { 'x-ws-resume': w3.token as string, 'x-ws-offset': '0', 'x-ws-sent': 'junk' })
  const w4 = await back.welcome()
  t.match(w4, { v: 1, resumed: true }, 'protocol 1: sent is not read')
  t.notOk('received' in w4)
  const upgraded = raw(t, urlOf(app, `/ws?v=2&resume=${w4.token as string}`), { 'x-ws-sent': '0' })
  t.match(await upgraded.welcome(), { v: 2, resumed: true, received: 0 }, 'a protocol 1 session resumed with v=2 counts from 0 (sent from the header)')

  bystander.ws.send('still here')
  await bystander.acked(1)
  t.ok(got.some(g => g.text === 'still here'), 'the bystander carries on')
})
