import { test } from 'tap'
import type { AddressInfo } from 'node:net'
import { buildServer } from '../examples/server.ts'
import { TestClient } from './helpers.ts'

test('the example server: welcome, join a room, broadcast to it, stats', async (t) => {
  const app = await buildServer()
  t.after(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const url = `ws://127.0.0.1:${(app.server.address() as AddressInfo).port}/ws`

  const alice = await TestClient.open(`${url}?user=alice`)
  const bob = await TestClient.open(`${url}?user=bob`)
  const welcome = await alice.json()
  t.equal(welcome.type, 'welcome')
  t.equal(welcome.user, 'alice')
  t.same(welcome.rooms, ['lobby'])
  await bob.json()

  alice.send({ type: 'join', room: 'dev' })
  t.match(await alice.json(), { type: 'joined', room: 'dev', user: 'alice' })
  bob.send({ type: 'join', room: 'dev' })
  t.match(await alice.json(), { type: 'joined', room: 'dev', user: 'bob' })
  t.match(await bob.json(), { type: 'joined', room: 'dev', user: 'bob' })

  bob.send({ type: 'say', room: 'dev', text: 'hi' })
  t.same(await alice.json(), { type: 'said', room: 'dev', from: 'bob', text: 'hi' })
  t.same(await bob.json(), { type: 'said', room: 'dev', from: 'bob', text: 'hi' })

  bob.send({ type: 'leave', room: 'dev' })
  t.match(await alice.json(), { type: 'left', room: 'dev', user: 'bob' })
  t.same(app.wsManager.getRoomMembers('dev'), [welcome.clientId])

  bob.send('not json')
  t.match(await bob.json(), { type: 'error', error: 'invalid JSON' })
  bob.send({ type: 'dance' })
  t.match(await bob.json(), { type: 'error' })

  const stats = await app.inject('/stats')
  t.equal(stats.json().connections, 2)
  t.equal(stats.json().users, 2)

  await alice.close()
  await bob.close()
})

test('the example server: anonymous users and binary frames', async (t) => {
  const app = await buildServer()
  t.after(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const client = await TestClient.open(`ws://127.0.0.1:${(app.server.address() as AddressInfo).port}/ws?user=`)
  t.match(await client.json(), { type: 'welcome', user: 'anonymous' })
  client.send(Buffer.from([1]))
  t.match(await client.json(), { type: 'error' })
  client.send({ type: 'say', text: 'to everyone' })
  t.same(await client.json(), { type: 'said', from: 'anonymous', text: 'to everyone' })
  await client.close()
})

test('the example server: a connection refused by a limit gets 4409 and the handler leaves it alone', async (t) => {
  const app = await buildServer({ limits: { maxConnectionsPerUser: 1 } })
  t.after(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const url = `ws://127.0.0.1:${(app.server.address() as AddressInfo).port}/ws?user=solo`
  const first = await TestClient.open(url)
  const second = await TestClient.open(url)
  t.equal((await second.closed).code, 4409)
  t.equal(second.pending, 0, 'no welcome for a refused connection')
  await first.close()
})
