import { test } from 'tap'
import WebSocket from 'ws'
import { Writable } from 'node:stream'
import { buildApp, urlOf } from '../helpers.ts'

/*
 * Defect: an upgrade to a route that is not `{ websocket: true }` (ws://host/stats) was
 * upgraded by @fastify/websocket and then closed with 1005 and no reason. It is refused
 * before the upgrade with 404, so the client's ws sees `unexpected-response`.
 */

interface Outcome { status?: number, body?: string, closeCode?: number }

function attempt (url: string): Promise<Outcome> {
  return new Promise(resolve => {
    const ws = new WebSocket(url)
    ws.on('error', () => {})
    ws.once('unexpected-response', (_req, res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { body += chunk })
      res.on('end', () => resolve({ status: res.statusCode, body }))
    })
    ws.once('close', (code) => resolve({ closeCode: code }))
  })
}

test('an upgrade to a plain route gets HTTP 404 before the upgrade; the route still answers plain requests', async (t) => {
  const lines: Array<{ msg: string, level: number, route?: string }> = []
  const stream = new Writable({ write (chunk: Buffer, _enc, done) { lines.push(JSON.parse(chunk.toString())); done() } })
  let handled = 0
  const app = await buildApp(t, {}, app => {
    app.get('/stats', async () => { handled++; return { ok: true } })
    app.post('/submit', async () => ({ ok: true }))
    app.get('/hooked/:id', { onRequest: async (request) => { request.headers['x-seen'] = 'yes' } }, async (request) => request.headers['x-seen'])
    app.register(async (child) => { child.get('/child/plain', async () => 'plain') })
    app.get('/ws', { websocket: true }, () => {})
  }, { logger: { level: 'info', stream } })

  const refused = await attempt(urlOf(app, '/stats'))
  t.equal(refused.status, 404, 'the client sees unexpected-response with 404, not 101 then 1005')
  t.match(JSON.parse(refused.body!), { statusCode: 404, error: 'Not Found', message: 'Route GET:/stats is not a WebSocket route' })
  t.equal(handled, 0, 'the route handler did not run')
  t.equal((await attempt(urlOf(app, '/child/plain'))).status, 404, 'a plain route in an encapsulated context too')
  const hooked = await attempt(urlOf(app, '/hooked/7?token=secret'))
  t.match(JSON.parse(hooked.body!), { statusCode: 404, message: 'Route GET:/hooked/:id is not a WebSocket route' }, 'a route with its own onRequest hook; the message names the pattern, never the query')
  t.ok(lines.some(l => l.msg === 'websocket upgrade refused: Route GET:/stats is not a WebSocket route' && l.route === '/stats'), 'the refusal is logged')

  const plain = await app.inject({ method: 'GET', url: '/stats' })
  t.same(plain.json(), { ok: true }, 'a plain request still reaches the handler')
  t.equal((await app.inject({ method: 'POST', url: '/submit' })).statusCode, 200)
  t.equal((await app.inject({ method: 'GET', url: '/hooked/7' })).body, 'yes', 'the route\'s own hook still runs')

  const ws = new WebSocket(urlOf(app, '/ws'))
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
  ws.close()
  await new Promise(resolve => ws.once('close', resolve))
})

test('an upgrade to an unknown path gets 404 as well', async (t) => {
  const app = await buildApp(t, {}, app => { app.get('/ws', { websocket: true }, () => {}) })
  const outcome = await attempt(urlOf(app, '/nowhere'))
  t.equal(outcome.status, 404)
  t.match(JSON.parse(outcome.body!), { statusCode: 404, message: 'Route GET:/nowhere not found' })
})
