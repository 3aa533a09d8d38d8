import { test } from 'tap'
import WebSocket from 'ws'
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import type { FastifyInstance } from 'fastify'
import type { Page } from 'playwright-core'
import { buildServer } from '../examples/server.ts'
import { StabilizerClient } from '../lib/client/index.ts'
import { chromiumAvailable, launchChromium } from './chromium.ts'

/*
 * The chat example in a real browser: the page (examples/chat/) on the compiled client,
 * served by examples/server.ts. Two pages chat, the server drops their TCP connections,
 * a third user talks meanwhile, and both pages come back with what they missed, once.
 */

const repo = resolve(fileURLToPath(import.meta.url), '../..')
const SCREENSHOTS = tmpdir()

/**
 * Compiles lib/client with the build's settings into a directory of this test (dist/ is left
 * alone). Without the type check (`npm run typecheck` does it): the same output, in a third of the time.
 */
async function buildClient (t: { teardown (fn: () => unknown): void }): Promise<string> {
  const out = mkdtempSync(join(tmpdir(), 'wss-browser-'))
  t.teardown(() => rmSync(out, { recursive: true, force: true }))
  const config = join(out, 'tsconfig.json')
  writeFileSync(config, JSON.stringify({
    extends: join(repo, 'tsconfig.build.json'),
    compilerOptions: { outDir: out, rootDir: repo, declaration: false, sourceMap: false, noCheck: true, types: [] },
    files: [join(repo, 'lib/client/index.ts')],
    include: []
  }))
  await promisify(execFile)(process.execPath, [join(repo, 'node_modules/typescript/bin/tsc'), '-p', config])
  return join(out, 'lib')
}

async function serve (lib: string, port = 0): Promise<{ app: FastifyInstance, holdResumes: () => () => void }> {
  const app = await buildServer({}, false, { lib, drop: true })
  let held: Promise<void> | undefined
  // while held, resumes wait before their upgrade: the network is down for the pages
  app.addHook('onRequest', async (request) => {
    if ((request.query as { resume?: string }).resume !== undefined) await held
  })
  await app.listen({ port, host: '127.0.0.1' })
  return {
    app,
    holdResumes: () => {
      let release!: () => void
      held = new Promise(resolve => { release = resolve })
      return release
    }
  }
}

const lines = (page: Page, room: string, text: string) => page.locator(`.log[data-room="${room}"] li`, { hasText: text })

async function say (page: Page, text: string): Promise<void> {
  await page.fill('#text', text)
  await page.press('#text', 'Enter')
}

test('the chat page in Chromium: two users chat, drop, resume with the missed messages once, then a new session', { skip: !chromiumAvailable() && 'chromium is not installed' }, async (t) => {
  const [lib, browser] = await Promise.all([buildClient(t), launchChromium(t)])
  let server = await serve(lib)
  const port = (server.app.server.address() as { port: number }).port
  const base = `http://127.0.0.1:${port}`
  let carol: StabilizerClient | undefined
  t.teardown(async () => {
    carol?.close()
    await server.app.close()
  })

  const context = await browser.newContext({ viewport: { width: 1000, height: 560 } })
  const errors: string[] = []
  const pages = await Promise.all([context.newPage(), context.newPage()])
  const [alice, bob] = pages
  for (const [page, user] of [[alice, 'alice'], [bob, 'bob']] as const) {
    page.setDefaultTimeout(5000)
    page.on('pageerror', err => errors.push(`${user}: ${err.message}`))
    await page.goto(`${base}/?user=${user}`)
    await page.locator('#status[data-state="open"]').waitFor()
  }

  // chat: notices, user lists, lines on both pages
  await lines(alice, 'lobby', 'bob joined #lobby').waitFor()
  await alice.locator('#users li', { hasText: 'bob' }).waitFor()
  await say(alice, 'hello from alice')
  await say(bob, 'hi alice')
  for (const page of pages) {
    await lines(page, 'lobby', 'hi alice').waitFor()
    t.equal(await lines(page, 'lobby', 'hello from alice').count(), 1)
    t.same(await page.locator('#users li').allTextContents(), ['alice', 'bob'], '"here now" from presence')
  }

  // a second tab of bob's: one entry for bob, with two connections; its close leaves bob listed
  const bobTab = await context.newPage()
  bobTab.setDefaultTimeout(5000)
  bobTab.on('pageerror', err => errors.push(`bob's second tab: ${err.message}`))
  await bobTab.goto(`${base}/?user=bob`)
  await bobTab.locator('#status[data-state="open"]').waitFor()
  await alice.locator('#users li[title="2 connections"]', { hasText: 'bob' }).waitFor()
  t.same(await alice.locator('#users li').allTextContents(), ['alice', 'bob'], 'a second tab is not a second entry')
  t.same(await bobTab.locator('#users li').allTextContents(), ['alice', 'bob'])
  t.equal(await alice.locator('#count').textContent(), '(2)')
  await bobTab.close()
  await alice.locator('#users li[title="2 connections"]').waitFor({ state: 'detached' })
  t.same(await alice.locator('#users li').allTextContents(), ['alice', 'bob'], 'bob is still here in his first tab')
  t.equal(await lines(alice, 'lobby', 'bob joined #lobby').count(), 1, 'one join notice for bob')
  t.equal(await lines(alice, 'lobby', 'bob left').count(), 0, 'and no leave')

  // rooms: alice joins #dev, talks there, and comes back to the lobby
  await alice.fill('#room-name', 'dev')
  await alice.press('#room-name', 'Enter')
  await alice.locator('#rooms li.active', { hasText: '#dev' }).waitFor()
  // the page joins with client.request: the answer is shown
  await alice.locator('#note', { hasText: 'joined #dev: 1 here (alice)' }).waitFor()
  await say(alice, 'only in dev')
  await lines(alice, 'dev', 'only in dev').waitFor()
  await alice.click('#rooms li[data-room="lobby"] .open')
  await alice.locator('#room-title', { hasText: '#lobby' }).waitFor()

  // the server cuts the TCP connections of both pages (POST /drop: socket.destroy(), no close frame)
  const release = server.holdResumes()
  let gone = 0
  const dropped = new Promise<void>(resolve => server.app.wsManager.on('disconnect', () => { if (++gone === 2) resolve() }))
  t.same((await server.app.inject({ method: 'POST', url: '/drop' })).json(), { dropped: 2 })
  await dropped
  for (const page of pages) await page.locator('#status[data-state="reconnecting"]').waitFor()

  // meanwhile carol (in Node, on the same client) comes in and talks
  carol = new StabilizerClient(`ws://127.0.0.1:${port}/ws?user=carol`, { WebSocket, protocol: 'stabilizer' })
  const echoes: string[] = []
  const both = new Promise<void>(resolve => carol!.on('message', (m) => {
    const message = m as { type: string, text?: string }
    if (message.type === 'said') echoes.push(message.text!)
    if (echoes.length === 2) resolve()
  }))
  await carol.connect()
  carol.send({ type: 'say', data: { room: 'lobby', text: 'missed 1' } })
  carol.send({ type: 'say', data: { room: 'lobby', text: 'missed 2' } })
  await both
  release()

  // both pages resume: carol's notice and lines replayed, each once, nothing else twice
  for (const page of pages) {
    await page.locator('#note', { hasText: 'resumed, 3 missed messages replayed' }).waitFor()
    await page.locator('#status[data-state="open"]').waitFor()
    await lines(page, 'lobby', 'missed 2').waitFor()
    for (const text of ['missed 1', 'missed 2', 'carol joined #lobby']) {
      t.equal(await lines(page, 'lobby', text).count(), 1, `${text}: once`)
      t.equal(await lines(page, 'lobby', text).and(page.locator('.replayed')).count(), 1, `${text}: marked as replayed`)
    }
    for (const text of ['hello from alice', 'hi alice']) t.equal(await lines(page, 'lobby', text).count(), 1, `${text}: still once`)
    await page.locator('#users li', { hasText: 'carol' }).waitFor()
  }
  t.equal(await alice.locator('#rooms li[data-room="dev"]').count(), 1, 'alice is back in #dev')
  t.equal(await lines(bob, 'dev', 'only in dev').count(), 0, 'bob never saw #dev')

  // live again
  await say(bob, 'back again')
  await lines(alice, 'lobby', 'back again').waitFor()
  t.equal(await lines(alice, 'lobby', 'back again').count(), 1)
  await alice.screenshot({ path: join(SCREENSHOTS, 'chat-alice-resumed.png') })
  await bob.screenshot({ path: join(SCREENSHOTS, 'chat-bob-resumed.png') })

  // a restart: the sessions are gone, the pages say so and carry on in a new session
  carol.close()
  carol = undefined
  await server.app.close()
  for (const page of pages) {
    await page.locator('#status[data-state="reconnecting"]').waitFor()
    const status = await page.locator('#status').textContent()
    t.match(status, /reconnecting/)
    t.notMatch(status, /resumed/, 'no stale note of the last resume beside "reconnecting"')
  }
  server = await serve(lib, port)
  for (const page of pages) {
    await page.locator('#note', { hasText: 'new session' }).waitFor()
    await page.locator('#status[data-state="open"]').waitFor()
  }
  await alice.locator('#rooms li[data-room="dev"]').waitFor({ state: 'detached' })
  await say(alice, 'after the restart')
  await lines(bob, 'lobby', 'after the restart').waitFor()
  await bob.screenshot({ path: join(SCREENSHOTS, 'chat-bob-new-session.png') })
  await alice.locator('#users li', { hasText: 'bob' }).waitFor()

  // bob closes his page: he leaves alice's list, with a notice
  await bob.close()
  await lines(alice, 'lobby', 'bob left #lobby').waitFor()
  await alice.locator('#users li', { hasText: 'bob' }).waitFor({ state: 'detached' })
  t.same(await alice.locator('#users li').allTextContents(), ['alice'], 'a user who closes the page leaves the list')

  t.same(errors, [], 'no errors in the pages')
})
