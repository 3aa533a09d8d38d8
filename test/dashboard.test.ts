import { test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import { Writable } from 'node:stream'
import wsStabilizer, { InvalidOptionsError, MemoryAdapter, MemoryBus, type WsStabilizerOptions } from '../plugin.ts'
import { buildApp, connect, until, type TestClient } from './helpers.ts'
import { DashboardClient, baseOf, openLive, ticket } from './dashboard-client.ts'
import { Tickets, ticketOf } from '../lib/dashboard/tickets.ts'
import { topRooms } from '../lib/dashboard/snapshot.ts'
import { tableQuery } from '../lib/dashboard/table.ts'
import { securityHeaders } from '../lib/dashboard/routes.ts'
import { Redis } from 'ioredis'
import { RedisAdapter } from '../lib/adapters/redis.ts'
import type { RedisPresence } from '../lib/adapters/redis-presence.ts'
import { redisAvailable, startRedis } from './redis-server.ts'

/*
 * The dashboard's server part: options, who gets in (401/403, tickets, origins), the CSP,
 * the snapshot every open dashboard shares, the table the server filters and pages among
 * thousands of connections, the actions (and read-only), two instances on one bus, and
 * nothing left running after close.
 */

const ALLOW = { authorize: 'unsafe-allow-all' as const, interval: 20 }

/** An app whose /ws identifies by ?id=&user=&room= (rooms joined on connect). */
async function dashboardApp (t: Parameters<typeof buildApp>[0], options: WsStabilizerOptions = { dashboard: ALLOW }, logs?: object[], more?: (app: FastifyInstance) => void): Promise<FastifyInstance> {
  const stream = new Writable({ write (chunk, _e, cb) { logs?.push(JSON.parse(chunk.toString())); cb() } })
  return await buildApp(t, options, app => {
    more?.(app)
    app.get('/ws', {
      websocket: true,
      config: {
        ws: {
          identify: (request) => {
            const q = request.query as { id?: string, user?: string }
            return { clientId: q.id, userId: q.user }
          }
        }
      }
    }, (_socket, request) => {
      const room = (request.query as { room?: string }).room
      if (room !== undefined) request.wsConnection!.join(room)
    })
  }, logs === undefined ? {} : { logger: { level: 'info', stream } })
}

const client = (app: FastifyInstance, id: string, user?: string, room?: string): Promise<TestClient> =>
  connect(app, `/ws?id=${id}${user === undefined ? '' : `&user=${user}`}${room === undefined ? '' : `&room=${room}`}`)

async function many (app: FastifyInstance, count: number, at = 0): Promise<TestClient[]> {
  const clients: TestClient[] = []
  for (let i = at; i < at + count; i += 200) {
    const batch = []
    for (let j = i; j < Math.min(i + 200, at + count); j++) batch.push(client(app, `c${j}`, `u${j % 100}`, `r${j % 10}`))
    clients.push(...await Promise.all(batch))
  }
  return clients
}

test('options: no dashboard without authorize; the fields are checked and named', async (t) => {
  const bad: Array<[unknown, RegExp]> = [
    [{}, /`dashboard.authorize` to be a function/],
    [null, /`dashboard` to be an object/],
    [[], /`dashboard` to be an object/],
    [{ authorize: true }, /`dashboard.authorize` to be a function .* got `true`/],
    ['yes', /`dashboard` to be an object/],
    [{ authorize: 'unsafe-allow-all', path: 'admin' }, /`dashboard.path` to be a path/],
    [{ authorize: 'unsafe-allow-all', path: '/admin/' }, /`dashboard.path`/],
    [{ authorize: 'unsafe-allow-all', readOnly: 1 }, /`dashboard.readOnly` to be a boolean/],
    [{ authorize: 'unsafe-allow-all', interval: 0 }, /`dashboard.interval`/],
    [{ authorize: 'unsafe-allow-all', colour: 'red' }, /Unknown option `dashboard.colour`; known options here are .*`authorize`/]
  ]
  for (const [dashboard, message] of bad) {
    const app = Fastify()
    await t.rejects(async () => { await app.register(wsStabilizer, { dashboard } as never) }, { code: new InvalidOptionsError('').code, message }, JSON.stringify(dashboard))
    await app.close()
  }
})

test('authorize: false is 403, unauthenticated is 401, true and { user } let in, on every route of the dashboard; CSP on each', async (t) => {
  const answers: Record<string, unknown> = { none: 'unauthenticated', viewer: true, alice: { user: 'alice' }, mallory: false }
  const app = await dashboardApp(t, {
    dashboard: {
      interval: 20,
      authorize: async (request, reply) => {
        const who = request.headers['x-who'] as string
        if (who === undefined) reply.header('www-authenticate', 'Basic realm="ws-admin"')
        return answers[who ?? 'none'] as never
      }
    }
  })
  for (const path of ['/ws-admin', '/ws-admin/dashboard.js', '/ws-admin/dashboard.css', '/ws-admin/favicon.svg', '/ws-admin/ticket']) {
    const anonymous = await fetch(`${baseOf(app)}${path}`)
    t.equal(anonymous.status, 401, `${path} anonymous`)
    t.equal(anonymous.headers.get('www-authenticate'), 'Basic realm="ws-admin"', 'authorize may set headers on the refusal')
    t.equal((await fetch(`${baseOf(app)}${path}`, { headers: { 'x-who': 'mallory' } })).status, 403, `${path} refused`)
    for (const who of ['viewer', 'alice']) {
      const ok = await fetch(`${baseOf(app)}${path}`, { headers: { 'x-who': who } })
      t.equal(ok.status, 200, `${path} ${who}`)
      const csp = ok.headers.get('content-security-policy')!
      t.match(csp, /default-src 'self'/)
      t.match(csp, /script-src 'self';/)
      t.notMatch(csp, /unsafe-inline|unsafe-eval/)
      t.match(csp, /connect-src 'self' ws:\/\/127\.0\.0\.1:\d+ wss:\/\/127\.0\.0\.1:\d+;/)
      t.match(csp, /frame-ancestors 'none'/)
      t.equal(ok.headers.get('x-content-type-options'), 'nosniff')
      t.equal(ok.headers.get('cache-control'), 'no-store')
    }
  }
  const html = await (await fetch(`${baseOf(app)}/ws-admin`, { headers: { 'x-who': 'viewer' } })).text()
  t.match(html, /<script type="module" src="\/ws-admin\/dashboard.js"><\/script>/)
  t.notMatch(html, /<script>|<style>|style="/, 'no inline script or style')
  t.match((await fetch(`${baseOf(app)}/ws-admin/dashboard.js`, { headers: { 'x-who': 'viewer' } })).headers.get('content-type')!, /text\/javascript/)
})

test('the socket: a ticket is needed, good once, and only from a page of this host', async (t) => {
  const app = await dashboardApp(t)
  await t.rejects(openLive(app, '/ws-admin', ['wss-dashboard']), { statusCode: 401 } as never, 'no ticket')
  await t.rejects(openLive(app, '/ws-admin', ['wss-dashboard', 'ticket.made-up']), { statusCode: 401 } as never, 'unknown ticket')
  const once = await ticket(app)
  const first = await openLive(app, '/ws-admin', ['wss-dashboard', `ticket.${once}`])
  t.equal(first.ws.protocol, 'wss-dashboard')
  await t.rejects(openLive(app, '/ws-admin', ['wss-dashboard', `ticket.${once}`]), { statusCode: 401 } as never, 'used')
  await t.rejects(openLive(app, '/ws-admin', ['wss-dashboard', `ticket.${await ticket(app)}`], { origin: 'https://evil.example' }), { statusCode: 403 } as never, 'another origin')
  await t.rejects(openLive(app, '/ws-admin', ['wss-dashboard', `ticket.${await ticket(app)}`], { origin: 'not a url' }), { statusCode: 403 } as never, 'not an origin')
  const same = await openLive(app, '/ws-admin', ['wss-dashboard', `ticket.${await ticket(app)}`], { origin: baseOf(app) })
  t.equal(app.wsManager.getConnectionCount(), 0, 'dashboards are not app connections')
  t.equal(app.wsManager.getStats().connectsTotal, 0)
  await first.close()
  await same.close()
})

test('tickets: good once, for 30 s; the oldest go when there are too many', async (t) => {
  const tickets = new Tickets()
  const a = tickets.issue('alice', 0)
  t.equal(tickets.take(a, 1000), 'alice')
  t.equal(tickets.take(a, 1000), undefined)
  const late = tickets.issue('bob', 0)
  t.equal(tickets.take(late, 30_001), undefined, 'expired')
  tickets.issue('carol', 0)
  tickets.issue('dave', 40_000)
  t.equal(tickets.size, 1, 'the expired one went when another was issued')
  for (let i = 0; i < 1005; i++) tickets.issue(`u${i}`, 50_000)
  t.equal(tickets.size, 1000)
  t.equal(ticketOf(undefined), undefined)
  t.equal(ticketOf('wss-dashboard, ticket.abc'), 'abc')
  t.equal(ticketOf('wss-dashboard'), undefined)
})

test('one snapshot per tick for every open dashboard: the same frame, figures as getStats() says', async (t) => {
  const app = await dashboardApp(t)
  const clients = await many(app, 30)
  clients[0].send('hello')
  const dashboards = await Promise.all([1, 2, 3].map(async () => await DashboardClient.open(app)))
  const hello = await dashboards[0].next('hello')
  t.equal(hello.readOnly, false)
  t.equal(hello.instance, app.wsManager.instanceId)
  t.ok(hello.history.length > 0, 'the plot so far')
  await until(() => app.wsManager.getStats().messagesIn === 1, 2000, 'the message counted')
  // a tick taken after all three are open reaches each of them
  const first = await dashboards[2].next('tick', 3000, f => f.stats.messagesIn === 1)
  const same = await Promise.all(dashboards.slice(0, 2).map(async d => await d.next('tick', 3000, f => f.t === first.t)))
  for (const frame of same) t.same(frame, first, 'the same snapshot')
  const stats = app.wsManager.getStats()
  t.equal(first.stats.connections, stats.connections)
  t.equal(first.stats.users, stats.users)
  t.equal(first.stats.rooms, stats.rooms)
  t.equal(first.stats.messagesIn, 1)
  t.same(first.rooms.top.map(([room]: [string]) => room).sort(), ['r0', 'r1', 'r2', 'r3', 'r4', 'r5', 'r6', 'r7', 'r8', 'r9'])
  t.same(first.rooms.top[0][1], 3)
  t.equal(first.cluster, undefined, 'the memory adapter alone: no instance list')
  t.equal(first.adapter.name, 'memory')
  t.equal(first.sample[1], 30)
  await Promise.all([...dashboards.map(async d => await d.close()), ...clients.map(async c => await c.close())])
})

test('the plot: rates, disconnects by reason, round-trip percentiles and gaps move with the traffic', async (t) => {
  const app = await dashboardApp(t, { dashboard: ALLOW, heartbeat: { interval: 20, timeout: 1000 } })
  const dashboard = await DashboardClient.open(app)
  const clients = await many(app, 40)
  await until(() => [...app.wsManager.connections()].every(c => c.rtt !== undefined), 2000, 'round trips')
  const withRtt = await dashboard.next('tick', 3000, f => f.rtt.count === 40)
  t.ok(withRtt.rtt.p50 <= withRtt.rtt.p90 && withRtt.rtt.p90 <= withRtt.rtt.p99 && withRtt.rtt.p99 <= withRtt.rtt.max)
  for (let i = 0; i < 50; i++) clients[i % 10].send('x')
  const busy = await dashboard.next('tick', 3000, f => f.perSecond.messagesIn > 0)
  t.ok(busy.sample[2] > 0, 'messages in on the plot')
  await app.wsManager.broadcast('to all')
  const out = await dashboard.next('tick', 3000, f => f.perSecond.messagesOut > 0)
  t.ok(out.perSecond.broadcasts > 0)
  t.equal(out.stats.broadcastsTotal, 1)
  await clients[0].close()
  const gone = await dashboard.next('tick', 3000, f => f.perSecond.disconnects > 0)
  t.equal(gone.stats.disconnectsTotal.client_close, 1)
  t.equal(gone.sample[1], 39)
  app.wsManager.emit('gap', { downMs: 1200, dropped: 3 })
  const gap = await dashboard.next('tick', 3000, f => f.adapter.gaps === 1)
  t.match(gap.adapter.lastGap, { downMs: 1200, dropped: 3 })
  await dashboard.close()
  await Promise.all(clients.map(async c => await c.close()))
})

test('the table among 2000 connections: the server filters and pages, the page gets one page', async (t) => {
  const app = await dashboardApp(t)
  const clients = await many(app, 2000)
  const dashboard = await DashboardClient.open(app)
  const all = await dashboard.next('table')
  t.equal(all.total, 2000)
  t.equal(all.rows.length, 25, 'one page')
  t.equal(all.rows[0].clientId, 'c0', 'oldest first')
  t.match(all.rows[0], { userId: 'u0', route: '/ws', rooms: ['r0'], roomCount: 1, bufferedBytes: 0, instance: app.wsManager.instanceId })

  const page = async (q: Record<string, unknown>): Promise<any> => {
    dashboard.skip()
    dashboard.query(q)
    return await dashboard.next('table', 3000, f => f.query.search === (q.search ?? '') && f.query.offset === (q.offset ?? 0))
  }
  const exact = await page({ search: 'c1234', field: 'clientId' })
  t.equal(exact.total, 1)
  t.equal(exact.rows[0].clientId, 'c1234')
  const contains = await page({ search: '123', field: 'clientId' })
  t.same(contains.rows.map((r: any) => r.clientId), ['c123', 'c1123', 'c1230', 'c1231', 'c1232', 'c1233', 'c1234', 'c1235', 'c1236', 'c1237', 'c1238', 'c1239'])
  const user = await page({ search: 'u7', field: 'userId', limit: 100 })
  t.equal(user.total, 20, 'a userId exactly: its connections (not u70… u79)')
  t.ok(user.rows.every((r: any) => r.userId === 'u7'))
  const users = await page({ search: '9', field: 'userId', limit: 1000 })
  t.equal(users.total, 19 * 20, 'u9, u19… u89 and u90… u99')
  t.equal(users.rows.length, 100, 'at most 100 rows a page')
  const room = await page({ search: 'r3', field: 'room', offset: 150, limit: 100 })
  t.equal(room.total, 200)
  t.equal(room.rows.length, 50)
  t.ok(room.rows.every((r: any) => r.rooms[0] === 'r3'))
  const roomLike = await page({ search: 'r', field: 'room' })
  t.equal(roomLike.total, 2000, 'a part of a room name')
  const any = await page({ search: 'u42' })
  t.equal(any.total, 20, 'any field')
  const none = await page({ search: 'nobody', field: 'bogus' })
  t.equal(none.total, 0)
  t.equal(none.query.field, 'any')
  for (let i = 0; i < 7; i++) app.wsManager.join('c1999', `extra${i}`)
  const rooms = await page({ search: 'c1999' })
  t.equal(rooms.rows[0].roomCount, 8)
  t.same(rooms.rows[0].rooms, ['r9', 'extra0', 'extra1', 'extra2', 'extra3'], 'five rooms listed')
  const anyExact = await page({ search: 'c5' })
  t.equal(anyExact.total, 1, 'a clientId exactly, in any field')
  // the rates of a row shown twice are since the last tick
  clients[5].send('a')
  clients[5].send('b')
  await until(() => app.wsManager.getConnection('c5')!.stats.messagesIn === 2, 2000, 'counted')
  const rate = await dashboard.next('table', 3000, f => f.query.search === 'c5' && f.rows[0].inPerSecond > 0)
  t.equal(rate.rows[0].clientId, 'c5')
  const settled = await dashboard.next('table', 3000, f => f.query.search === 'c5' && f.rows[0].inPerSecond === 0)
  t.equal(settled.rows[0].clientId, 'c5', 'nothing since: 0 a second')
  await dashboard.close()
  await Promise.all(clients.map(async c => await c.close()))
})

test('actions: disconnect a connection or a user, send to a connection or a room; each logged with who did it', async (t) => {
  const logs: Array<Record<string, any>> = []
  const app = await dashboardApp(t, { dashboard: { interval: 20, authorize: () => ({ user: 'alice' }) } }, logs)
  const [a, b, b2, c] = await Promise.all([client(app, 'a', 'ann', 'news'), client(app, 'b', 'bob', 'news'), client(app, 'b2', 'bob'), client(app, 'c', 'cyd')])
  const dashboard = await DashboardClient.open(app)

  const kicked = await dashboard.act({ action: 'disconnect', clientId: 'a', code: '4000', reason: 'by an operator' })
  t.match(kicked, { ok: true, message: 'a disconnected' })
  t.same(await a.closed, { code: 4000, reason: 'by an operator' })
  const user = await dashboard.act({ action: 'disconnectUser', userId: 'bob' })
  t.match(user, { ok: true, message: '2 connection(s) of bob disconnected' })
  t.equal((await b.closed).code, 1000)
  t.equal((await b2.closed).code, 1000)

  t.match(await dashboard.act({ action: 'send', clientId: 'c', message: 'plain text' }), { ok: true, message: 'delivered to c' })
  t.equal(await c.next(), 'plain text')
  t.match(await dashboard.act({ action: 'send', clientId: 'c', message: '{"type":"notice","text":"hi"}', json: true }), { ok: true })
  t.same(await c.json(), { type: 'notice', text: 'hi' })
  const news = await client(app, 'd', 'dee', 'news')
  t.match(await dashboard.act({ action: 'sendRoom', room: 'news', message: 'to the room' }), { ok: true, message: 'sent to room news: 1 of 1 delivered over 1 instance(s)' })
  t.equal(await news.next(), 'to the room')
  t.ok(await c.silentFor(50), 'not in the room')

  const refused: Array<[Record<string, unknown>, RegExp]> = [
    [{ action: 'disconnect', clientId: 'c', code: 1006 }, /close code 1000 or 3000-4999/],
    [{ action: 'disconnect', clientId: 'c', code: 'x' }, /close code/],
    [{ action: 'disconnect', clientId: 'c', reason: 'x'.repeat(124) }, /at most 123 bytes/],
    [{ action: 'disconnect' }, /clientId to be a non-empty string/],
    [{ action: 'send', clientId: 'c' }, /message to be a string/],
    [{ action: 'send', clientId: 'c', message: '{', json: true }, /JSON text/],
    [{ action: 'sendRoom', message: 'x' }, /room to be a non-empty string/],
    [{ action: 'explode' }, /unknown action "explode"/],
    [{}, /unknown action ""/]
  ]
  for (const [action, message] of refused) t.match(await dashboard.act(action), { ok: false, message }, JSON.stringify(action))
  t.ok(c.ws.readyState === 1, 'still connected')
  dashboard.client.send('not json')
  t.match(await dashboard.next('result'), { ok: false, message: /expected a JSON message/ })
  dashboard.client.send(Buffer.from([1, 2]))
  t.match(await dashboard.next('result'), { ok: false })
  dashboard.client.send('null')
  t.match(await dashboard.next('result'), { ok: false })

  const actions = logs.filter(l => typeof l.msg === 'string' && l.msg.startsWith('dashboard action'))
  t.match(actions, [
    { actor: 'alice', action: 'disconnect', clientId: 'a', code: 4000, reason: 'by an operator', found: true },
    { actor: 'alice', action: 'disconnectUser', userId: 'bob', connections: 2 },
    { actor: 'alice', action: 'send', clientId: 'c', delivered: true },
    { actor: 'alice', action: 'send', clientId: 'c', delivered: true },
    { actor: 'alice', action: 'sendRoom', room: 'news', total: 1, succeeded: 1, failed: 0, partial: false }
  ])
  t.ok(logs.some(l => l.msg === 'dashboard opened' && l.actor === 'alice'))
  await dashboard.close()
  await Promise.all([c.close(), news.close()])
})

test('who acts: request.user as an app sets it, else the IP', async (t) => {
  const logs: Array<Record<string, any>> = []
  const app = await dashboardApp(t, { dashboard: { interval: 20, authorize: () => true } }, logs, app => {
    app.addHook('onRequest', async (request) => {
      const user = request.headers['x-user']
      if (user === 'jwt') (request as any).user = { sub: 'sub-1', name: 'Jay' }
      else if (user === 'odd') (request as any).user = { roles: [] }
      else if (user !== undefined) (request as any).user = user
    })
  })
  for (const [header, actor] of [['jwt', 'sub-1'], ['erin', 'erin'], ['odd', 'ip:127.0.0.1'], [undefined, 'ip:127.0.0.1']] as const) {
    const dashboard = await DashboardClient.open(app, '/ws-admin', header === undefined ? {} : { 'x-user': header })
    await dashboard.act({ action: 'disconnect', clientId: 'nobody' })
    await dashboard.close()
    t.match(logs.filter(l => l.msg === 'dashboard action: disconnect').at(-1), { actor, clientId: 'nobody', found: false }, String(header))
  }
})

test('readOnly: the page is told, every action is refused and logged', async (t) => {
  const logs: Array<Record<string, any>> = []
  const app = await dashboardApp(t, { dashboard: { ...ALLOW, readOnly: true } }, logs)
  const a = await client(app, 'a', 'ann')
  const dashboard = await DashboardClient.open(app)
  t.equal((await dashboard.next('hello')).readOnly, true)
  t.same((await (await fetch(`${baseOf(app)}/ws-admin/ticket`)).json() as any).readOnly, true)
  for (const action of ['disconnect', 'disconnectUser', 'send', 'sendRoom']) {
    t.match(await dashboard.act({ action, clientId: 'a', userId: 'ann', room: 'x', message: 'm' }), { ok: false, message: 'the dashboard is read-only' })
  }
  t.ok(await a.silentFor(50))
  t.equal(a.ws.readyState, 1, 'still connected')
  t.equal(logs.filter(l => l.msg === 'dashboard action refused: the dashboard is read-only').length, 4)
  await dashboard.close()
  await a.close()
})

test('two instances on one bus: the instance list, the table; the actions act wherever the connection is and say what happened', async (t) => {
  const bus = new MemoryBus()
  const one = await dashboardApp(t, { dashboard: ALLOW, adapter: new MemoryAdapter({ bus }) })
  const two = await dashboardApp(t, { adapter: new MemoryAdapter({ bus }) })
  const [here, there, there2, cyd] = await Promise.all([client(one, 'here', 'ann'), client(two, 'there', 'bob', 'lobby'), client(two, 'there2', 'bob'), client(two, 'cyd', 'cyd')])
  const dashboard = await DashboardClient.open(one)
  const tick = await dashboard.next('tick', 3000, f => f.cluster?.instances.length === 2)
  t.equal(tick.cluster.connections, 4, 'over both')
  t.match(tick.cluster.instances, [
    { id: one.wsManager.instanceId, self: true, connections: 1, health: 'up' },
    { id: two.wsManager.instanceId, self: false, alive: true, connections: 3, health: 'up' }
  ])
  const table = await dashboard.next('table', 3000, f => f.total === 4)
  t.match(table.rows, [{ clientId: 'here', instance: one.wsManager.instanceId }, { clientId: 'there', instance: 'remote', userId: 'bob', rooms: ['lobby'] }, { clientId: 'there2' }])
  dashboard.query({ search: 'lobby', field: 'room' })
  t.match((await dashboard.next('table', 3000, f => f.query.search === 'lobby')).rows, [{ clientId: 'there' }])
  dashboard.query({ search: 'lob', field: 'room' })
  t.match(await dashboard.next('table', 3000, f => f.query.search === 'lob'), { total: 1, rows: [{ clientId: 'there' }] }, 'a part of a room name: a pass over the other instance\'s connections too')
  dashboard.query({ search: 'bob', field: 'userId' })
  t.match(await dashboard.next('table', 3000, f => f.query.search === 'bob'), { total: 2, rows: [{ clientId: 'there' }, { clientId: 'there2' }] }, 'a user exactly, found on the other instance\'s index')

  t.match(await dashboard.act({ action: 'send', clientId: 'there', message: 'across' }), { ok: true, message: 'delivered to there' })
  t.equal(await there.next(), 'across')
  t.match(await dashboard.act({ action: 'send', clientId: 'nobody', message: 'lost' }), { ok: false, message: 'nobody was not found on any instance, or its write failed' })
  const here2 = await client(one, 'here2', 'ann', 'lobby')
  t.match(await dashboard.act({ action: 'sendRoom', room: 'lobby', message: 'room across' }), { ok: true, message: 'sent to room lobby: 2 of 2 delivered over 2 instance(s)' })
  t.equal(await there.next(), 'room across')
  t.equal(await here2.next(), 'room across')
  t.match(await dashboard.act({ action: 'disconnect', clientId: 'there', code: 4000 }), { ok: true, message: 'there disconnected' })
  t.equal((await there.closed).code, 4000)
  await until(() => two.wsManager.getConnectionCount() === 2, 2000, 'gone there')
  t.match(await dashboard.act({ action: 'disconnect', clientId: 'there' }), { ok: false, message: 'there was not found on any instance' })
  t.match(await dashboard.act({ action: 'disconnectUser', userId: 'bob' }), { ok: true, message: '1 connection(s) of bob disconnected' })
  t.equal((await there2.closed).code, 1000)
  t.equal(cyd.ws.readyState, 1, 'another user\'s connection stays')
  await dashboard.close()
  await Promise.all([here.close(), here2.close(), cyd.close()])
})

test('two instances: an instance that does not answer is a partial send to a room, an adapter that cannot count instances an action failure; the dashboard goes on', async (t) => {
  const bus = new MemoryBus()
  const adapter = new MemoryAdapter({ bus })
  const one = await dashboardApp(t, { dashboard: ALLOW, adapter, cluster: { timeout: 100 } })
  const two = await dashboardApp(t, { adapter: new MemoryAdapter({ bus }) })
  const [here, there] = await Promise.all([client(one, 'here', 'ann', 'lobby'), client(two, 'there', 'bob', 'lobby')])
  const dashboard = await DashboardClient.open(one)
  // the other instance is counted as live but its answers never come
  const remoteInstances = adapter.presence.remoteInstances.bind(adapter.presence)
  adapter.presence.remoteInstances = async () => [...await remoteInstances(), 'silent']
  t.match(await dashboard.act({ action: 'sendRoom', room: 'lobby', message: 'partly' }), { ok: false, message: /^sent to room lobby: 2 of 2 delivered over 2 instance\(s\); only 2 of 3 instances answered in time$/ })
  t.match(await dashboard.act({ action: 'send', clientId: 'elsewhere', message: 'x' }), { ok: false, message: /did not answer|answered/ })
  adapter.presence.remoteInstances = async () => { throw new Error('broker down') }
  t.match(await dashboard.act({ action: 'disconnect', clientId: 'there' }), { ok: false, message: /broker down/ })
  t.match(await dashboard.act({ action: 'sendRoom', room: 'lobby', message: 'x' }), { ok: false, message: /broker down/ })
  t.equal(there.ws.readyState, 1, 'not closed')
  t.ok(await dashboard.next('tick'), 'the ticks go on')
  await dashboard.close()
  await Promise.all([here.close(), there.close()])
})

test('the instance list when the presence cannot answer: the error is shown, the ticks go on', async (t) => {
  const adapter = new MemoryAdapter()
  const app = await dashboardApp(t, { dashboard: ALLOW, adapter })
  let fail = true
  adapter.presence.instances = async () => { if (fail) throw new Error('presence down'); return [] }
  const dashboard = await DashboardClient.open(app)
  const tick = await dashboard.next('tick', 3000, f => f.cluster?.error !== undefined)
  t.match(tick.cluster, { error: /presence down/, instances: [{ self: true }] })
  fail = false
  const again = await dashboard.next('tick', 3000, f => f.cluster === undefined)
  t.equal(again.cluster, undefined)
  // a slow presence: the ticks go on meanwhile, asking once; then a dead instance is shown as such
  let answer!: () => void
  let asked = 0
  adapter.presence.instances = async () => {
    asked++
    await new Promise<void>(resolve => { answer = resolve })
    return [{ id: 'dead-one', alive: false, connections: 7, lastHeartbeat: undefined }]
  }
  await dashboard.next('tick')
  await dashboard.next('tick')
  await dashboard.next('tick')
  t.equal(asked, 1, 'not asked again while it has not answered')
  answer()
  const dead = await dashboard.next('tick', 3000, f => f.cluster !== undefined)
  t.match(dead.cluster, { connections: 0, instances: [{ self: true }, { id: 'dead-one', alive: false, health: 'gone (kept for resumes)' }] })
  await dashboard.close()
})

test('a presence without instances(): no instance list; a Redis-like adapter alone shows itself', async (t) => {
  const adapter = new MemoryAdapter()
  Object.defineProperty(adapter, 'name', { value: 'custom' })
  ;(adapter.presence as { instances?: unknown }).instances = undefined
  const app = await dashboardApp(t, { dashboard: ALLOW, adapter })
  const dashboard = await DashboardClient.open(app)
  const tick = await dashboard.next('tick')
  t.match(tick.cluster, { instances: [{ id: app.wsManager.instanceId, self: true }], connections: 0 })
  await dashboard.close()
})

test('nothing left after close: the timer cleared, the open dashboards closed (1001)', async (t) => {
  // every interval made while the app starts and runs is recorded, to see that each is cleared
  const made: NodeJS.Timeout[] = []
  const original = globalThis.setInterval
  globalThis.setInterval = ((...args: Parameters<typeof setInterval>) => {
    const timer = original(...args)
    // the dashboard's interval (the others made meanwhile are other parts')
    if (args[1] === ALLOW.interval) made.push(timer)
    return timer
  }) as typeof setInterval
  t.teardown(() => { globalThis.setInterval = original })
  const app = Fastify()
  await app.register(wsStabilizer, { dashboard: ALLOW, heartbeat: { enabled: false } })
  await app.listen({ port: 0, host: '127.0.0.1' })
  globalThis.setInterval = original
  t.equal(made.length, 1, 'one timer, the dashboard\'s')
  t.equal(made[0].hasRef(), false, 'unref\'d')
  const dashboard = await DashboardClient.open(app)
  await dashboard.next('tick')
  await app.close()
  t.equal((await dashboard.client.closed).code, 1001)
  t.ok(made.every(timer => (timer as unknown as { _destroyed: boolean })._destroyed), 'cleared')
})

test('topRooms keeps the largest, largest first; tableQuery bounds what the page asks', async (t) => {
  const rooms: Array<[string, number]> = [['a', 1], ['b', 5], ['c', 3], ['d', 5], ['e', 2], ['f', 9]]
  t.same(topRooms(rooms, 3), { total: 6, top: [['f', 9], ['b', 5], ['d', 5]] })
  t.same(topRooms([], 3), { total: 0, top: [] })
  t.same(tableQuery({ search: '  x ', field: 'room', offset: 20, limit: 500 }), { search: 'x', field: 'room', offset: 20, limit: 100 })
  t.same(tableQuery({ search: 3, offset: -1, limit: 1.5 }), { search: '', field: 'any', offset: 0, limit: 25 })
})

test('the plot keeps `history` points; a Host header that is not a host stays out of the CSP', async (t) => {
  const app = await dashboardApp(t, { dashboard: { ...ALLOW, interval: 10, history: 10 } })
  await new Promise(resolve => setTimeout(resolve, 400))
  const dashboard = await DashboardClient.open(app)
  const hello = await dashboard.next('hello')
  t.equal(hello.history.length, 10)
  t.equal(hello.historySize, 10)
  t.ok(hello.history.every((p: number[], i: number) => i === 0 || p[0] > hello.history[i - 1][0]), 'oldest first')
  await dashboard.close()
  t.match(securityHeaders(undefined)['content-security-policy'], /connect-src 'self';/)
  t.match(securityHeaders("x; script-src 'unsafe-inline'")['content-security-policy'], /connect-src 'self';/)
  t.match(securityHeaders('[::1]:3000')['content-security-policy'], /connect-src 'self' ws:\/\/\[::1\]:3000 wss:\/\/\[::1\]:3000;/)
})

test('a dashboard that does not read is skipped until it drained, not buffered without end', async (t) => {
  const app = await dashboardApp(t)
  // fifty rooms with long names make every snapshot ~500 kB
  const clients = await Promise.all(Array.from({ length: 50 }, async (_, i) => await client(app, `c${i}`, undefined, `${i}-${'x'.repeat(10_000)}`)))
  const dashboard = await DashboardClient.open(app)
  await dashboard.next('tick')
  const socket = (dashboard.client.ws as unknown as { _socket: { pause (): void, resume (): void } })._socket
  socket.pause()
  await new Promise(resolve => setTimeout(resolve, 1500))
  dashboard.skip()
  const times: number[] = []
  dashboard.client.ws.on('message', (data) => {
    const frame = JSON.parse(data.toString())
    if (frame.type === 'tick') times.push(frame.t)
  })
  socket.resume()
  await until(() => times.length > 0 && Date.now() - times[times.length - 1] < 100, 5000, 'live again')
  const gaps = times.slice(1).map((time, i) => time - times[i])
  t.ok(Math.max(...gaps) > 30 * ALLOW.interval, `ticks were skipped while it did not read (largest gap ${Math.max(...gaps)} ms)`)
  await dashboard.close()
  await Promise.all(clients.map(async c => await c.close()))
})

test('Redis presence: instances() tells the other instances, their connections and last heartbeat; a dead one has none', { skip: !redisAvailable() && 'redis-server is not installed' }, async (t) => {
  const redis = await startRedis(t)
  const adapter = (): RedisAdapter => new RedisAdapter({ url: redis.url, prefix: 'dash-instances', presenceTtl: 3000 })
  const one = await dashboardApp(t, { adapter: adapter() })
  const presence = one.wsManager.adapter.presence as RedisPresence
  t.same(await presence.instances(), [], 'alone')
  const two = await dashboardApp(t, { adapter: adapter() })
  const clients = await Promise.all([client(two, 'a'), client(two, 'b')])
  await until(async () => (await presence.instances())[0]?.connections === 2, 3000, 'two connections there')
  const [other] = await presence.instances()
  t.equal(other.id, two.wsManager.instanceId)
  t.equal(other.alive, true)
  t.ok(Date.now() - other.lastHeartbeat! < 3000, 'a recent heartbeat')
  // its liveness key gone, as when it dies: its presence is kept for resumes
  const raw = new Redis(redis.url)
  t.teardown(() => raw.quit())
  await raw.del(`dash-instances:instance:{${two.wsManager.instanceId}}`)
  t.match(await presence.instances(), [{ id: two.wsManager.instanceId, alive: false, connections: 2, lastHeartbeat: undefined }])
  await Promise.all(clients.map(async c => await c.close()))
})

test('presence rooms: the users present on every instance beside the members here; a room selected lists them, a page of at most 100 with each one\'s connections', async (t) => {
  const bus = new MemoryBus()
  const withPresence = (app: FastifyInstance): void => {
    app.get('/p', { websocket: true, config: { ws: { rooms: ['lobby'], presence: true, identify: (request) => ({ clientId: (request.query as { id: string }).id, userId: (request.query as { user?: string }).user }) } } }, () => {})
  }
  const one = await dashboardApp(t, { dashboard: ALLOW, adapter: new MemoryAdapter({ bus }) }, undefined, withPresence)
  const two = await dashboardApp(t, { adapter: new MemoryAdapter({ bus }) }, undefined, withPresence)
  const member = (app: FastifyInstance, id: string, user?: string): Promise<TestClient> => connect(app, `/p?id=${id}${user === undefined ? '' : `&user=${user}`}`)
  const clients = await Promise.all([member(one, 'a1', 'ann'), member(two, 'a2', 'ann'), member(two, 'b1', 'bob'), member(two, 'anon'), client(one, 'plain', 'pat', 'plain-room')])
  for (let i = 0; i < 101; i += 50) clients.push(...await Promise.all(Array.from({ length: Math.min(50, 101 - i) }, (_, j) => member(two, `m${i + j}`, `user${String(i + j).padStart(3, '0')}`))))
  await until(async () => Object.keys(await one.wsManager.presence('lobby')).length === 104, 3000, 'the presence of both')
  const dashboard = await DashboardClient.open(one)
  const tick = await dashboard.next('tick', 3000, f => f.rooms.top.some((r: unknown[]) => r[0] === 'lobby' && r[2] === 104))
  t.same(tick.rooms.top.find((r: unknown[]) => r[0] === 'lobby'), ['lobby', 1, 104], 'one member here, 104 users present over both')
  t.same(tick.rooms.top.find((r: unknown[]) => r[0] === 'plain-room'), ['plain-room', 1], 'a room without presence: its members only')

  dashboard.client.send({ type: 'presence', room: 'lobby' })
  const first = await dashboard.next('presence')
  t.match(first, { room: 'lobby', offset: 0, total: 104 })
  t.equal(first.users.length, 100, 'capped')
  t.same(first.users.slice(0, 4).sort(), [['ann', 2], ['anon', 1], ['bob', 1], ['user000', 1]], 'each with its connections in the room')
  dashboard.client.send({ type: 'presence', room: 'lobby', offset: 100 })
  const rest = await dashboard.next('presence', 3000, f => f.offset === 100)
  t.same(rest.users.map((u: [string, number]) => u[0]), ['user097', 'user098', 'user099', 'user100'])
  t.match(await dashboard.next('presence', 3000, f => f.offset === 100), { total: 104 }, 'sent again with the ticks')
  dashboard.client.send({ type: 'presence', room: 'lobby', offset: 0 })
  await clients[0].close()
  const after = await dashboard.next('presence', 3000, f => f.offset === 0 && f.users.some((u: [string, number]) => u[0] === 'ann' && u[1] === 1))
  t.equal(after.total, 104, 'ann is still there with her other connection: kept up to date with the ticks')
  dashboard.client.send({ type: 'presence', room: 'nowhere' })
  t.match(await dashboard.next('presence', 3000, f => f.room === 'nowhere'), { total: 0, users: [] })
  dashboard.client.send({ type: 'presence', room: '' })
  await dashboard.next('tick')
  dashboard.skip()
  await dashboard.next('tick')
  await dashboard.next('tick')
  await t.rejects(dashboard.next('presence', 100), 'no room selected: no presence pages')
  await dashboard.close()
  await Promise.all(clients.slice(1).map(async c => { await c.close() }))
})

test('Redis, two instances: the dashboard\'s actions act on the other instance\'s connections and say what happened', { skip: !redisAvailable() && 'redis-server is not installed' }, async (t) => {
  const redis = await startRedis(t)
  const adapter = (): RedisAdapter => new RedisAdapter({ url: redis.url, prefix: 'dash-actions' })
  const one = await dashboardApp(t, { dashboard: ALLOW, adapter: adapter() })
  const two = await dashboardApp(t, { adapter: adapter() })
  const [here, there, there2] = await Promise.all([client(one, 'here', 'ann', 'lobby'), client(two, 'there', 'bob', 'lobby'), client(two, 'there2', 'bob')])
  await until(async () => (await one.wsManager.adapter.presence.remoteConnections()).length === 2, 3000, 'the other instance\'s connections')
  const dashboard = await DashboardClient.open(one)
  t.match(await dashboard.act({ action: 'send', clientId: 'there', message: 'over redis' }), { ok: true, message: 'delivered to there' })
  t.equal(await there.next(), 'over redis')
  t.match(await dashboard.act({ action: 'send', clientId: 'nobody', message: 'x' }), { ok: false, message: /nobody was not found/ })
  t.match(await dashboard.act({ action: 'sendRoom', room: 'lobby', message: 'all of the lobby' }), { ok: true, message: 'sent to room lobby: 2 of 2 delivered over 2 instance(s)' })
  t.equal(await here.next(), 'all of the lobby')
  t.equal(await there.next(), 'all of the lobby')
  t.match(await dashboard.act({ action: 'disconnectUser', userId: 'bob', code: 4001 }), { ok: true, message: '2 connection(s) of bob disconnected' })
  t.equal((await there.closed).code, 4001)
  t.equal((await there2.closed).code, 4001)
  t.match(await dashboard.act({ action: 'disconnect', clientId: 'there' }), { ok: false, message: 'there was not found on any instance' })
  await dashboard.close()
  await here.close()
})
