import { test } from 'tap'
import WebSocket, { WebSocketServer } from 'ws'
import type { AddressInfo } from 'node:net'
import { StabilizerClient, ClientErrorCodes, type PresenceChange } from '../lib/client/index.ts'
import { buildApp, urlOf, until } from './helpers.ts'

interface Test { after (fn: () => unknown): void }

function clientOf (t: Test, url: string): { client: StabilizerClient, changes: PresenceChange[], messages: unknown[], errors: Error[] } {
  const client = new StabilizerClient(url, { WebSocket, heartbeat: false, reconnect: { initialDelay: 20 } })
  const changes: PresenceChange[] = []
  const messages: unknown[] = []
  const errors: Error[] = []
  client.on('presence', change => changes.push(change))
  client.on('message', data => messages.push(data))
  client.on('error', err => errors.push(err))
  t.after(() => { client.close() })
  return { client, changes, messages, errors }
}

test('the client keeps each room\'s map from the state and the diffs, and says who joined and left', async (t) => {
  const app = await buildApp(t, { presence: { maxMembers: 3 } }, app => {
    app.get('/ws', {
      websocket: true,
      config: { ws: { rooms: ['lobby'], presence: true, identify: request => ({ userId: (request.query as { user: string }).user, metadata: { n: (request.query as { user: string }).user.length } }) } }
    }, () => {})
  })
  const alice = clientOf(t, urlOf(app, '/ws?user=alice'))
  await alice.client.connect()
  await until(() => alice.changes.length === 1)
  t.match(alice.changes[0], { room: 'lobby', count: 1, joins: ['alice'], leaves: [] })
  t.same(alice.client.presence('nowhere'), undefined)
  const bob = clientOf(t, urlOf(app, '/ws?user=bob'))
  await bob.client.connect()
  await until(() => alice.changes.length === 2)
  t.match(alice.changes[1], { room: 'lobby', count: 2, joins: ['bob'], leaves: [] })
  t.same(Object.keys(bob.client.presence('lobby')!.users!).sort(), ['alice', 'bob'], 'the newcomer\'s state has everyone')
  t.same(bob.changes[0].joins.sort(), ['alice', 'bob'])
  const bob2 = clientOf(t, urlOf(app, '/ws?user=bob'))
  await bob2.client.connect()
  await until(() => alice.changes.length === 3)
  t.match(alice.changes[2], { count: 2, joins: [], leaves: [] }, 'a second device: no join')
  t.equal(alice.client.presence('lobby')!.users!.bob.length, 2)
  // over the cap of 3: counts only
  const carol = clientOf(t, urlOf(app, '/ws?user=carol'))
  await carol.client.connect()
  const dave = clientOf(t, urlOf(app, '/ws?user=dave'))
  await dave.client.connect()
  await until(() => alice.client.presence('lobby')!.count === 4)
  t.same(alice.client.presence('lobby'), { room: 'lobby', count: 4, users: undefined })
  t.same(dave.client.presence('lobby'), { room: 'lobby', count: 4, users: undefined })
  dave.client.close()
  await until(() => alice.client.presence('lobby')!.count === 3)
  t.equal(alice.client.presence('lobby')!.users, undefined, 'at the cap: still counts')
  carol.client.close()
  await until(() => alice.client.presence('lobby')!.users !== undefined)
  t.same(Object.keys(alice.client.presence('lobby')!.users!).sort(), ['alice', 'bob'], 'the map again, a tenth under the cap')
  t.match(alice.changes.at(-1), { count: 2, joins: ['alice', 'bob'] }, 'from a count, everyone is new')
  bob.client.close()
  await until(() => alice.client.presence('lobby')!.users!.bob?.length === 1)
  t.match(alice.changes.at(-1), { joins: [], leaves: [] })
  bob2.client.close()
  await until(() => alice.client.presence('lobby')!.users!.bob === undefined)
  t.match(alice.changes.at(-1), { count: 1, joins: [], leaves: ['bob'] })
  t.same(alice.messages, [], 'presence frames are not messages')
  t.same(alice.errors, [])
})

/** A bare ws server that sends each of `frames` to whoever connects. */
async function serverSending (t: Test, frames: string[]): Promise<string> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' })
  await new Promise(resolve => wss.once('listening', resolve))
  wss.on('connection', socket => { for (const frame of frames) socket.send(frame) })
  t.after(() => new Promise(resolve => {
    for (const client of wss.clients) client.terminate()
    wss.close(resolve)
  }))
  return `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/`
}

const meta = (clientId: string): { clientId: string, metadata: object } => ({ clientId, metadata: {} })

test('a diff before its room\'s state waits for it, then applies (as Phoenix\'s client does)', async (t) => {
  const url = await serverSending(t, [
    JSON.stringify({ type: 'presence.diff', room: 'r', joins: { bob: [meta('b1')] }, leaves: {} }),
    JSON.stringify({ type: 'presence.diff', room: 'r', joins: {}, leaves: { alice: [meta('a1')] } }),
    JSON.stringify({ type: 'presence.state', room: 'r', users: { alice: [meta('a1')], toString: [meta('t1')] } }),
    'after'
  ])
  const { client, changes, messages } = clientOf(t, url)
  await client.connect()
  await until(() => messages.length === 1)
  t.same(changes.map(c => [c.joins, c.leaves]), [[['alice', 'toString'], []], [['bob'], []], [[], ['alice']]], 'the state, then the diffs that waited')
  t.same(client.presence('r')!.users, Object.assign(Object.create(null), { toString: [meta('t1')], bob: [meta('b1')] }))
})

test('odd diffs: a leave of someone unknown, a map diff on a room known by its count only', async (t) => {
  const url = await serverSending(t, [
    JSON.stringify({ type: 'presence.state', room: 'r', users: {} }),
    JSON.stringify({ type: 'presence.diff', room: 'r', joins: {}, leaves: { ghost: [meta('g1')] } }),
    JSON.stringify({ type: 'presence.state', room: 'big', count: 5000 }),
    JSON.stringify({ type: 'presence.diff', room: 'big', joins: { x: [meta('x1')] }, leaves: {} }),
    JSON.stringify({ type: 'presence.diff', room: 'big', count: 5001 }),
    'after'
  ])
  const { client, changes, messages } = clientOf(t, url)
  await client.connect()
  await until(() => messages.length === 1)
  t.same(changes.map(c => [c.room, c.count, c.joins, c.leaves]), [['r', 0, [], []], ['r', 0, [], []], ['big', 5000, [], []], ['big', 5000, [], []], ['big', 5001, [], []]])
  t.same(client.presence('big'), { room: 'big', count: 5001, users: undefined })
})

test('a presence frame that cannot be read is an error, not a message; the next frames still come', async (t) => {
  const url = await serverSending(t, [
    '{"type":"presence.state", nope',
    '{"type":"presence.state","users":{}}',
    '{"type":"presence.diff","room":"r","joins":{"a":[{"id":1}]},"leaves":{}}',
    '{"type":"presence.diff","room":"r","joins":{"a":"x"},"leaves":{}}',
    '{"type":"presence.diff","room":"r","joins":{},"leaves":null}',
    '{"type":"presence.state","room":"r","users":{"a":[null]}}',
    'after'
  ])
  const { client, changes, messages, errors } = clientOf(t, url)
  await client.connect()
  await until(() => messages.length === 1)
  t.same(messages, ['after'])
  t.same(changes, [])
  t.equal(errors.length, 6)
  t.ok(errors.every(err => (err as { code?: string }).code === ClientErrorCodes.BAD_FRAME))
})
