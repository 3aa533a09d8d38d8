import { test } from 'tap'
import WebSocket from 'ws'
import type { AddressInfo } from 'node:net'
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { buildServer, defaultAssets, isLoopback } from '../examples/server.ts'
import { moduleFiles } from '../examples/static-files.ts'
import { runDemo } from '../examples/reconnect.ts'
import { StabilizerClient } from '../lib/client/index.ts'
import { TestClient } from './helpers.ts'

interface ChatMessage { type: string, [key: string]: any }

/** A chat user on the package's client, with an inbox: `take(type)` is the first message of that type, waiting for it. */
class Chatter {
  readonly client: StabilizerClient<ChatMessage>
  readonly inbox: ChatMessage[] = []
  /** Every message received, in order, taken or not. */
  readonly all: ChatMessage[] = []
  #waiters: Array<() => void> = []

  constructor (url: string) {
    // no jitter: a dropped client is back at once
    this.client = new StabilizerClient<ChatMessage>(url, { WebSocket, protocol: 'stabilizer', random: () => 0 })
    this.client.on('message', (data) => {
      // the router's error frames are protocol frames, not envelopes: they come as text
      const message = typeof data === 'string' ? JSON.parse(data) as ChatMessage : data
      this.inbox.push(message)
      this.all.push(message)
      this.#wake()
    })
    this.client.on('presence', () => this.#wake())
  }

  #wake (): void {
    for (const wake of this.#waiters.splice(0)) wake()
  }

  /** Waits until `done()`, checked after each message and presence change. */
  async until (done: () => boolean, timeoutMs: number, what: () => string): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!done()) {
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(what())
      await new Promise<void>(resolve => {
        const timer = setTimeout(resolve, left)
        this.#waiters.push(() => { clearTimeout(timer); resolve() })
      })
    }
  }

  static async open (url: string): Promise<Chatter> {
    const chatter = new Chatter(url)
    await chatter.client.connect()
    return chatter
  }

  async take (type: string, where: (m: ChatMessage) => boolean = () => true, timeoutMs = 2000): Promise<ChatMessage> {
    const found = (): number => this.inbox.findIndex(m => m.type === type && where(m))
    await this.until(() => found() !== -1, timeoutMs, () => `no ${type} message within ${timeoutMs} ms; inbox: ${JSON.stringify(this.inbox)}`)
    return this.inbox.splice(found(), 1)[0]
  }

  /** The room's "here now" list as the page shows it: the users of the client's presence map, sorted. */
  here (room: string): string[] | undefined {
    const users = this.client.presence(room)?.users
    return users === undefined ? undefined : Object.keys(users).sort()
  }

  /** Waits until the room's "here now" list is `users`; resolves with it. */
  async hereNow (room: string, users: string[], timeoutMs = 2000): Promise<string[]> {
    const same = (): boolean => JSON.stringify(this.here(room)) === JSON.stringify(users)
    await this.until(same, timeoutMs, () => `#${room} did not list ${users.join(', ')} within ${timeoutMs} ms: ${JSON.stringify(this.here(room))}`)
    return this.here(room)!
  }

  /** Messages of `type` received since the `since`th message. */
  count (type: string, where: (m: ChatMessage) => boolean = () => true, since = 0): number {
    return this.all.slice(since).filter(m => m.type === type && where(m)).length
  }

  said (): string[] {
    return this.all.filter(m => m.type === 'said').map(m => m.text)
  }

  say (room: string | undefined, text: string): void {
    this.client.send({ type: 'say', data: { room, text } })
  }
}

interface Started {
  app: FastifyInstance
  url: string
  /** From now on resumes wait before their upgrade, as if the network were down, until `release()`. */
  holdResumes (): { release: () => void }
}

async function start (t: { after (fn: () => unknown): void }, options = {}): Promise<Started> {
  const app = await buildServer(options)
  t.after(() => app.close())
  let held: Promise<void> | undefined
  app.addHook('onRequest', async (request) => {
    if ((request.query as { resume?: string }).resume !== undefined) await held
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  return {
    app,
    url: `ws://127.0.0.1:${(app.server.address() as AddressInfo).port}/ws`,
    holdResumes: () => {
      let release!: () => void
      held = new Promise(resolve => { release = resolve })
      return { release }
    }
  }
}

const from = (user: string) => (m: ChatMessage) => m.user === user

test('the chat: state, join notices, rooms, "here now" lists from presence, say, leave, errors, stats', async (t) => {
  const { app, url } = await start(t)
  const alice = await Chatter.open(`${url}?user=alice`)
  t.after(() => alice.client.close())
  const state = await alice.take('state')
  t.same(state, { type: 'state', clientId: alice.client.clientId, user: 'alice', rooms: ['lobby'] })
  t.match(await alice.take('joined'), { room: 'lobby', user: 'alice' })
  await alice.hereNow('lobby', ['alice'])

  const bob = await Chatter.open(`${url}?user=bob`)
  t.after(() => bob.client.close())
  t.same((await bob.take('state')).rooms, ['lobby'])
  await bob.hereNow('lobby', ['alice', 'bob'])
  t.match(await alice.take('joined'), { room: 'lobby', user: 'bob' })
  await alice.hereNow('lobby', ['alice', 'bob'])
  t.same(Object.keys(await app.wsManager.presence('lobby')).sort(), ['alice', 'bob'], 'the server\'s map is the same')

  const answer = alice.client.request('join', { room: 'dev' })
  t.match(await alice.take('joined'), { room: 'dev', user: 'alice' })
  t.same(await answer, { room: 'dev', users: ['alice'] }, 'the join answers the request, with the room\'s presence')
  t.same((await alice.take('state', m => m.rooms.length === 2)).rooms, ['dev', 'lobby'])
  await alice.hereNow('dev', ['alice'])
  bob.client.send({ type: 'join', data: { room: 'dev' } })
  t.match(await alice.take('joined'), { room: 'dev', user: 'bob' })
  await alice.hereNow('dev', ['alice', 'bob'])

  bob.say('dev', 'hi')
  t.match(await alice.take('said'), { room: 'dev', from: 'bob', text: 'hi' })
  t.match(await bob.take('said'), { room: 'dev', from: 'bob', text: 'hi' })
  t.same((await bob.take('state', m => m.rooms.length === 2)).rooms, ['dev', 'lobby'])

  bob.client.send({ type: 'leave', data: { room: 'dev' } })
  t.match(await alice.take('left'), { room: 'dev', user: 'bob' })
  await alice.hereNow('dev', ['alice'])
  t.same(alice.here('lobby'), ['alice', 'bob'], 'bob is still in the lobby')
  t.same((await bob.take('state', m => m.rooms.length === 1)).rooms, ['lobby'])
  t.same(app.wsManager.getRoomMembers('dev'), [alice.client.clientId])
  bob.say('dev', 'still here?')
  t.match(await bob.take('error'), { error: 'join #dev first' })
  alice.say('dev', 'only alice now')
  await alice.take('said', m => m.text === 'only alice now')

  bob.client.send('not json')
  t.match(await bob.take('error'), { code: 'INVALID_JSON' })
  bob.client.send({ type: 'dance' })
  t.match(await bob.take('error'), { code: 'UNKNOWN_TYPE' })
  await t.rejects(bob.client.request('join', { room: '../etc' }), { code: 'VALIDATION_FAILED', message: /room/ })
  bob.client.send('null')
  t.match(await bob.take('error'), { code: 'INVALID_MESSAGE' })
  bob.say(undefined, '  ')
  t.same(await bob.client.request('leave', { room: 'nowhere' }), { room: 'nowhere', left: false })
  t.same(bob.said(), ['hi'], 'bob got nothing of dev after leaving it')

  const stats = await app.inject('/stats')
  t.equal(stats.json().connections, 2)
  t.equal(stats.json().users, 2)
  t.equal(alice.count('users'), 0, 'no hand-made user lists: the lists are presence\'s')
})

test('the chat on the wire: the welcome first, then envelopes; anonymous users; binary frames', async (t) => {
  const { url } = await start(t)
  const client = await TestClient.open(`${url}?user=`)
  t.after(() => client.close())
  t.match(await client.json(), { type: 'welcome', v: 1, resumed: false })
  const state = await client.json()
  t.match(state, { type: 'message', data: { type: 'state', user: 'anonymous', rooms: ['lobby'] } })
  t.equal(state.offset, undefined, 'the state is volatile: never replayed')
  const joined = await client.json()
  t.match(joined, { type: 'message', data: { type: 'joined', user: 'anonymous', room: 'lobby' } })
  t.type(joined.offset, 'number', 'a notice is logged for replay')
  const presence = await client.json()
  t.same(presence, { type: 'presence.state', room: 'lobby', users: { anonymous: [{ clientId: state.data.clientId, metadata: {} }] } }, 'presence frames are the plugin\'s, outside the envelope')

  client.send(Buffer.from([1]))
  t.match(await client.json(), { type: 'error', code: 'BINARY_NOT_ALLOWED' })
  client.send({ type: 'say', data: { text: 'to everyone' } })
  t.match(await client.json(), { type: 'message', offset: joined.offset + 1, data: { type: 'said', from: 'anonymous', text: 'to everyone' } })
})

test('the chat after a drop: the session resumes without notices and the missed lines come once', async (t) => {
  const { app, url, holdResumes } = await start(t)
  const alice = await Chatter.open(`${url}?user=alice`)
  const bob = await Chatter.open(`${url}?user=bob`)
  t.after(() => { alice.client.close(); bob.client.close() })
  await alice.take('joined', from('bob'))
  const bobId = bob.client.clientId
  bob.say('lobby', 'before')
  await bob.take('said')

  // the network is down for bob until released: his resume waits before the upgrade
  const { release } = holdResumes()
  const resumed = new Promise<{ replayed: number }>(resolve => bob.client.once('resumed', resolve))
  const gone = new Promise(resolve => app.wsManager.once('disconnect', resolve))
  const mark = alice.all.length
  for (const conn of app.wsManager.getUserConnections('bob')) conn.socket.terminate()
  await gone
  // a round trip of alice's: the presence flush of the drop is done (a request of hers, not a line bob would miss)
  await alice.client.request('leave', { room: 'nowhere' })
  t.same(alice.here('lobby'), ['alice', 'bob'], 'bob is held for his resume: still here')
  alice.say('lobby', 'missed 1')
  alice.say('lobby', 'missed 2')
  await alice.take('said', m => m.text === 'missed 2')
  release()

  t.same(await resumed, { replayed: 2 })
  t.equal(bob.client.clientId, bobId, 'the same session')
  t.match(await bob.take('said', m => m.text === 'missed 2'), { from: 'alice', room: 'lobby' })
  t.same((await bob.take('state')).rooms, ['lobby'])
  await bob.hereNow('lobby', ['alice', 'bob'])
  bob.say('lobby', 'back')
  await alice.take('said', m => m.text === 'back')
  await bob.take('said', m => m.text === 'back')
  t.same(bob.said(), ['before', 'missed 1', 'missed 2', 'back'], 'each missed line once, none twice')
  t.equal(alice.count('joined', from('bob'), mark) + alice.count('left', from('bob'), mark), 0, 'a resume is no leave and no join')

  t.same(alice.here('lobby'), ['alice', 'bob'])
  t.equal(alice.client.presence('lobby')!.users!.bob.length, 1, 'the resumed connection took the place of the dropped one')

  // a goodbye ends the session at once
  bob.client.close()
  t.match(await alice.take('left'), { room: 'lobby', user: 'bob' })
  await alice.hereNow('lobby', ['alice'])
})

test('the chat: a dropped session that does not come back within maxDisconnect is announced as left', async (t) => {
  const { app, url } = await start(t, { reconnect: { maxDisconnect: 50 } })
  const alice = await Chatter.open(`${url}?user=alice`)
  t.after(() => alice.client.close())
  const carol = await TestClient.open(`${url}?user=carol`)
  await alice.take('joined', from('carol'))
  await alice.hereNow('lobby', ['alice', 'carol'])
  for (const conn of app.wsManager.getUserConnections('carol')) conn.socket.terminate()
  await carol.closed
  t.match(await alice.take('left'), { room: 'lobby', user: 'carol' })
  t.same(alice.here('lobby'), ['alice'], 'carol is gone from the list with her notice')
})

test('the chat: two tabs of one user are one user in notices and lists', async (t) => {
  const { url } = await start(t)
  const alice = await Chatter.open(`${url}?user=alice`)
  const tab1 = await Chatter.open(`${url}?user=bob`)
  const tab2 = await Chatter.open(`${url}?user=bob`)
  t.after(() => { alice.client.close(); tab1.client.close() })
  await tab2.hereNow('lobby', ['alice', 'bob'])
  const tabs = (): number => alice.client.presence('lobby')?.users?.bob?.length ?? 0
  await alice.until(() => tabs() === 2, 2000, () => 'bob\'s second tab is not listed')
  t.same(alice.here('lobby'), ['alice', 'bob'], 'one entry for bob, with two connections')
  tab2.client.close()
  await alice.until(() => tabs() === 1, 2000, () => 'the tab that closed is still listed')
  alice.say('lobby', 'ping')
  await alice.take('said')
  t.equal(tabs(), 1, 'the tab that closed is gone, bob is not')
  t.same(alice.here('lobby'), ['alice', 'bob'])
  t.equal(alice.count('joined', from('bob')), 1, 'one join notice for bob')
  t.equal(alice.count('left'), 0, 'bob is still here in his other tab')
})

test('the chat: POST /drop cuts every connection without a close frame, and only when asked for', async (t) => {
  const app = await buildServer({}, false, { drop: true })
  t.after(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const client = await TestClient.open(`ws://127.0.0.1:${(app.server.address() as AddressInfo).port}/ws?user=dan`)
  t.same((await app.inject({ method: 'POST', url: '/drop' })).json(), { dropped: 1 })
  t.equal((await client.closed).code, 1006)

  const { app: plain } = await start(t)
  t.equal((await plain.inject({ method: 'POST', url: '/drop' })).statusCode, 404)
})

test('the chat: the dashboard at /ws-admin only when asked for (the entry point asks on the loopback interface only)', async (t) => {
  const open = await buildServer({}, false, { page: undefined, lib: undefined, dashboard: true })
  t.teardown(() => open.close())
  const page = await open.inject('/ws-admin')
  t.equal(page.statusCode, 200)
  t.match(page.headers['content-security-policy'], /default-src 'self'/)
  const closed = await buildServer({}, false, { page: undefined, lib: undefined })
  t.teardown(() => closed.close())
  t.equal((await closed.inject('/ws-admin')).statusCode, 404)
  t.same(['127.0.0.1', 'localhost', '::1', '0.0.0.0', '10.0.0.5'].map(isLoopback), [true, true, true, false, false])
})

test('the chat: a connection refused by a limit gets 4409 and the handler leaves it alone', async (t) => {
  const { url } = await start(t, { limits: { maxConnectionsPerUser: 1 } })
  const first = await TestClient.open(`${url}?user=solo`)
  const second = await TestClient.open(`${url}?user=solo`)
  t.equal((await second.closed).code, 4409)
  t.equal(second.pending, 0, 'no welcome, no state for a refused connection')
  await first.close()
})

test('the chat page and the client modules are served, and nothing else', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'chat-assets-'))
  t.after(() => rmSync(root, { recursive: true, force: true }))
  const lib = join(root, 'lib')
  mkdirSync(join(lib, 'client'), { recursive: true })
  writeFileSync(join(lib, 'client', 'index.js'), 'export { a } from "./a.js";\nimport \'./side.js\'\n')
  writeFileSync(join(lib, 'client', 'a.js'), 'import { b } from \'../shared.js\';\nexport const a = b\n')
  writeFileSync(join(lib, 'client', 'side.js'), 'import(\'./lazy.js\')\n')
  writeFileSync(join(lib, 'client', 'lazy.js'), '')
  writeFileSync(join(lib, 'shared.js'), 'export const b = 1\n')
  writeFileSync(join(lib, 'server-only.js'), 'export const secret = 1\n')

  const app = await buildServer({}, false, { page: defaultAssets().page, lib })
  t.after(() => app.close())
  const page = await app.inject('/')
  t.equal(page.statusCode, 200)
  t.match(page.headers['content-type'], 'text/html')
  t.match(page.body, '<script type="module" src="/chat.js">')
  t.match((await app.inject('/chat.js')).headers['content-type'], 'text/javascript')
  t.match((await app.inject('/chat.js')).body, 'from \'/client/index.js\'')
  t.match((await app.inject('/chat.css')).headers['content-type'], 'text/css')
  const index = await app.inject('/client/index.js')
  t.equal(index.statusCode, 200)
  t.match(index.headers['content-type'], 'text/javascript')
  t.equal(index.headers['x-content-type-options'], 'nosniff')
  for (const path of ['/client/a.js', '/client/side.js', '/client/lazy.js', '/shared.js']) t.equal((await app.inject(path)).statusCode, 200, path)
  for (const path of ['/server-only.js', '/index.html', '/client/../server-only.js', '/client/%2e%2e/server-only.js', '/..%2fpackage.json', '/client/..%2f..%2f..%2fpackage.json']) {
    t.equal((await app.inject(path)).statusCode, 404, path)
  }

  writeFileSync(join(lib, 'client', 'a.js'), 'import \'../../outside.js\'\n')
  t.throws(() => moduleFiles(lib, 'client/index.js'), /outside/)
})

test('the chat without a compiled client says how to get one', async (t) => {
  const app = await buildServer({}, false, { page: undefined, lib: undefined })
  t.after(() => app.close())
  const res = await app.inject('/client/index.js')
  t.equal(res.statusCode, 503)
  t.match(res.body, 'npm run build')
  t.equal((await app.inject('/')).statusCode, 404)
})

test('the chat finds its page from the sources', async (t) => {
  t.match(defaultAssets().page, /examples[/\\]chat$/)
})

test('the reconnect demo: the dropped client resumes and gets the missed lines, once each', async (t) => {
  const lines: string[] = []
  const result = await runDemo(line => lines.push(line))
  t.same(result.live, ['hello bob', 'are you there?', 'back, and I got both'])
  t.same(result.replayed, ['bob? you missed this', 'and this'])
  t.equal(result.clientIds[0], result.clientIds[1], 'the same session after the drop')
  t.ok(lines.some(line => line.includes('resumed: the same session, 2 missed messages follow')), 'the demo says so')
})
