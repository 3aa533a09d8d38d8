import { expect, test } from 'tstyche'
import Fastify from 'fastify'
import wsStabilizer, { type PresenceEvent, type PresenceMeta, type PresenceUser, type RouteWsOptions } from '../plugin.ts'
import { StabilizerClient, type PresenceChange, type RoomPresence } from '../lib/client/index.ts'

const app = Fastify()

test('presence options: plugin-wide and per route', () => {
  expect(app.register(wsStabilizer, { presence: { interval: 20, maxMembers: 100, sweep: 1000 } })).type.not.toRaiseError()
  expect(app.register).type.not.toBeCallableWith(wsStabilizer, { presence: { maxMembers: 'many' } })
  expect(app.get('/a', { websocket: true, config: { ws: { presence: true } } }, () => {})).type.not.toRaiseError()
  expect(app.get('/b', { websocket: true, config: { ws: { presence: { fields: ['name'] } } } }, () => {})).type.not.toRaiseError()
  expect<RouteWsOptions>().type.not.toBeAssignableFrom({ presence: 'yes' })
  expect<RouteWsOptions>().type.not.toBeAssignableFrom({ presence: { fields: 'name' } })
})

test('wsManager.presence and the presence event', async () => {
  const users = await app.wsManager.presence('lobby')
  expect(users).type.toBe<Record<string, PresenceMeta[]>>()
  expect(Object.values(users).flat().map(meta => meta.clientId)).type.toBe<string[]>()
  app.wsManager.on('presence', event => {
    expect(event).type.toBe<PresenceEvent>()
    expect(event.joins).type.toBe<PresenceUser[]>()
    expect(event.leaves.flatMap(user => user.metas)).type.toBe<PresenceMeta[]>()
  })
})

test('the client\'s presence', () => {
  const client = new StabilizerClient('ws://localhost/ws')
  expect(client.presence('lobby')).type.toBe<RoomPresence | undefined>()
  client.on('presence', change => {
    expect(change).type.toBe<PresenceChange>()
    expect(change.joins).type.toBe<string[]>()
    expect(change.users).type.toBe<Readonly<Record<string, readonly import('../lib/client/index.ts').PresenceMeta[]>> | undefined>()
  })
})
