import t0, { test } from 'tap'
import { mkdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance } from 'fastify'
import type { Page } from 'playwright-core'
import type { WsStabilizerOptions } from '../plugin.ts'
import { RedisAdapter } from '../lib/adapters/redis.ts'
import { buildApp, connect, until, type TestClient } from './helpers.ts'
import { baseOf } from './dashboard-client.ts'
import { chromiumAvailable, launchChromium } from './chromium.ts'
import { redisAvailable, startRedis } from './redis-server.ts'

/*
 * The dashboard page in Chromium: it loads under its CSP without a violation, shows the
 * figures getStats() has, its plot moves as clients connect and send, the search finds one
 * connection among 3000 and its disconnect button closes it. With Redis, one dashboard shows
 * two instances. Screenshots go to test/screenshots/ (gitignored).
 */

// 3000 clients and a browser on a shared 2-core machine: more than the 60 s of .taprc
t0.setTimeout(4 * 60_000)

const SCREENSHOTS = resolve(fileURLToPath(import.meta.url), '../screenshots')
const skip = !chromiumAvailable() && 'chromium is not installed'

async function app (t: Parameters<typeof buildApp>[0], options: WsStabilizerOptions): Promise<FastifyInstance> {
  return await buildApp(t, options, app => {
    app.get('/ws', {
      websocket: true,
      config: { ws: { identify: (request) => { const q = request.query as { id?: string, user?: string }; return { clientId: q.id, userId: q.user } } } }
    }, (_socket, request) => {
      const room = (request.query as { room?: string }).room
      if (room !== undefined) request.wsConnection!.join(room)
    })
    // a room with presence on, for its column and panel
    app.get('/standup', {
      websocket: true,
      config: { ws: { presence: true, identify: (request) => ({ userId: (request.query as { user: string }).user }) } }
    }, (_socket, request) => { request.wsConnection!.join('standup') })
  })
}

const ROOMS = ['lobby', 'support', 'sales', 'dev', 'ops', 'random']

async function many (target: FastifyInstance, count: number, at = 0): Promise<TestClient[]> {
  const clients: TestClient[] = []
  for (let i = at; i < at + count; i += 250) {
    const batch = []
    for (let j = i; j < Math.min(i + 250, at + count); j++) batch.push(connect(target, `/ws?id=c${j}&user=user${j % 700}&room=${ROOMS[j % ROOMS.length]}`))
    clients.push(...await Promise.all(batch))
  }
  return clients
}

async function value (page: Page, id: string): Promise<number> {
  return Number(await page.getAttribute(id, 'data-value'))
}

async function pageFor (t: { teardown (fn: () => unknown): void }, target: FastifyInstance): Promise<{ page: Page, errors: string[] }> {
  const browser = await launchChromium(t)
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } })
  const page = await context.newPage()
  const errors: string[] = []
  page.on('pageerror', err => errors.push(err.message))
  page.on('console', message => { if (message.type() === 'error') errors.push(message.text()) })
  const response = await page.goto(`${baseOf(target)}/ws-admin`)
  t.teardown(() => context.close())
  if (response === null) throw new Error('no response')
  return { page, errors }
}

test('the dashboard in Chromium: figures as getStats(), the plot moves, search among 3000, disconnect', { skip }, async (t) => {
  mkdirSync(SCREENSHOTS, { recursive: true })
  const target = await app(t, { dashboard: { authorize: 'unsafe-allow-all', interval: 250 }, heartbeat: { interval: 1000, timeout: 10_000 } })
  const clients = await many(target, 3000)
  const { page, errors } = await pageFor(t, target)
  await page.waitForSelector('#status.ok')
  await until(async () => await value(page, '#stat-connections') === 3000, 5000, 'the page shows 3000 connections')
  const stats = target.wsManager.getStats()
  t.equal(await value(page, '#stat-users'), stats.users, 'users as getStats()')
  t.equal(await value(page, '#stat-rooms'), stats.rooms, 'rooms as getStats()')
  t.equal(await page.locator('#room-table tbody tr').count(), ROOMS.length)
  t.equal(await page.textContent('#room-table tr[data-room="lobby"] td.num'), '500')
  t.equal(Number(await page.getAttribute('#page-info', 'data-total')), 3000)
  t.equal(await page.locator('#conn-table tbody tr').count(), 25, 'one page of rows')

  // the plot moves: more connections, messages in and out
  const before = (await page.getAttribute('#plot', 'data-last'))!.split(',').map(Number)
  const more = await many(target, 200, 3000)
  // traffic until the plot shows it
  const traffic = setInterval(() => {
    for (const c of clients.slice(0, 300)) c.send('hello')
    target.wsManager.broadcast({ type: 'news' }, { room: 'lobby' }).catch(() => {})
  }, 50)
  t.teardown(() => clearInterval(traffic))
  await until(async () => {
    const last = (await page.getAttribute('#plot', 'data-last'))!.split(',').map(Number)
    return last[0] === 3200 && last[1] > 0 && last[2] > 0
  }, 10_000, 'the plot shows 3200 connections and messages in and out')
  clearInterval(traffic)
  t.ok(before[0] === 3000, 'it showed 3000 before')
  t.ok(Number(await page.getAttribute('#plot', 'data-points')) > 3, 'points accumulate')
  t.ok(await value(page, '#stat-in') > 0 || await value(page, '#stat-out') >= 0)
  await until(async () => (await page.textContent('#stat-rtt')) !== '–', 5000, 'round trips shown')
  await page.screenshot({ path: join(SCREENSHOTS, 'dashboard-plot.png') })

  // search: one connection among 3200
  await page.fill('#search-text', 'c2345')
  await page.waitForSelector('#conn-table tbody tr[data-client-id="c2345"]')
  await until(async () => await page.locator('#conn-table tbody tr').count() === 1, 3000, 'one row')
  t.equal(await page.textContent('#page-info'), '1–1 of 1')
  await page.screenshot({ path: join(SCREENSHOTS, 'dashboard-search.png') })

  // disconnect it from its row
  await page.fill('#act-code', '4000')
  await page.fill('#act-reason', 'from the dashboard')
  await page.click('#conn-table button[data-client-id="c2345"]')
  t.same(await clients[2345].closed, { code: 4000, reason: 'from the dashboard' })
  await page.waitForSelector('#results li.ok', { state: 'attached' })
  t.equal(await page.textContent('#results li'), 'c2345 disconnected')
  await until(async () => await value(page, '#stat-connections') === 3199, 5000, 'one fewer')
  await until(async () => (await page.textContent('#page-info')) === 'no connection', 3000, 'gone from the table')
  await until(async () => (await page.textContent('#disconnects tbody'))!.includes('server_disconnect'), 3000, 'its reason')

  // send to a room from the form
  await page.selectOption('#act-kind', 'room')
  await page.fill('#act-target', 'support')
  await page.fill('#act-message', 'maintenance at noon')
  await page.click('#act-send')
  t.equal(await clients[1].next(), 'maintenance at noon', 'c1 is in support')

  // presence: a room whose route has it on shows its users; the panel lists them (the README's screenshot)
  const standup = await Promise.all(Array.from({ length: 24 }, async (_, i) => await connect(target, `/standup?user=${['ana', 'ben', 'chen', 'dana', 'eli', 'fay', 'gus', 'hana'][i % 8]}`)))
  const present = Object.keys(await target.wsManager.presence('standup')).length
  t.equal(present, 8, 'eight users, three connections each')
  await page.fill('#search-text', '')
  await page.waitForSelector('#room-table tr[data-room="standup"] td.link.num')
  await until(async () => (await page.textContent('#room-table tr[data-room="standup"] td.link.num')) === '8', 5000, 'the room shows its 8 present users')
  await page.click('#room-table tr[data-room="standup"] td.link.num')
  await until(async () => await value(page, '#presence-total') === present, 5000, 'the panel shows who is present')
  t.equal(await page.locator('#presence-table tbody tr').count(), 8)
  t.equal(await page.textContent('#presence-room'), 'standup')
  await page.screenshot({ path: join(SCREENSHOTS, 'dashboard.png') })
  t.same(errors, [], 'no error and no CSP violation on the page')
  await Promise.all([...clients, ...more, ...standup].map(async c => await c.close()))
})

test('in Chromium: 403 without the right, 401 unauthenticated; readOnly hides the actions', { skip }, async (t) => {
  const refused = await app(t, { dashboard: { authorize: (request) => request.headers['x-admin'] === undefined ? 'unauthenticated' : false } })
  const browser = await launchChromium(t)
  const page = await browser.newPage()
  t.equal((await page.goto(`${baseOf(refused)}/ws-admin`))!.status(), 401)
  await page.setExtraHTTPHeaders({ 'x-admin': 'no' })
  t.equal((await page.goto(`${baseOf(refused)}/ws-admin`))!.status(), 403)
  const shared = await app(t, { dashboard: { authorize: 'unsafe-allow-all', readOnly: true, interval: 100 } })
  const response = await page.goto(`${baseOf(shared)}/ws-admin`)
  t.match(response!.headers()['content-security-policy'], /default-src 'self'/)
  await page.waitForSelector('#status.ok')
  t.equal(await page.isVisible('#readonly'), true)
  t.equal(await page.isVisible('#actions'), false, 'no action form')
  await page.close()
})

test('in Chromium with Redis: two instances, one dashboard shows both', { skip: skip || (!redisAvailable() && 'redis-server is not installed') }, async (t) => {
  const redis = await startRedis(t)
  const options = (dashboard: boolean): WsStabilizerOptions => ({
    adapter: new RedisAdapter({ url: redis.url, prefix: 'dash', presenceTtl: 600 }),
    ...(dashboard ? { dashboard: { authorize: 'unsafe-allow-all', interval: 200 } } : {})
  })
  const one = await app(t, options(true))
  const two = await app(t, options(false))
  const here = await many(one, 30)
  const there = await many(two, 70, 1000)
  const { page, errors } = await pageFor(t, one)
  await page.waitForSelector('#status.ok')
  await until(async () => await page.locator('#instances tbody tr').count() === 2, 5000, 'both instances listed')
  await until(async () => Number(await page.getAttribute('#cluster-total', 'data-value')) === 100, 5000, 'connections over both')
  t.equal(await page.getAttribute(`#instances tr[data-instance="${two.wsManager.instanceId}"]`, 'data-connections'), '70')
  t.equal(await page.getAttribute(`#instances tr[data-instance="${one.wsManager.instanceId}"]`, 'data-connections'), '30')
  t.equal(await value(page, '#stat-connections'), 30, 'this instance\'s own figures')
  // a connection of the other instance, found and disconnected from this one's dashboard
  await page.fill('#search-text', 'c1042')
  await page.waitForSelector('#conn-table tbody tr[data-client-id="c1042"]')
  await page.click('#conn-table button[data-client-id="c1042"]')
  t.equal((await there[42].closed).code, 1000)
  await page.screenshot({ path: join(SCREENSHOTS, 'dashboard-cluster.png') })
  t.same(errors, [], 'no error on the page')
  await Promise.all([...here, ...there].map(async c => await c.close()))
})
