// For the README's RedisEmitter fragment, a worker's code: an instance of the app (the Redis
// adapter, prefix `myapp-prod`) in this process, with one client, alice's phone, in room
// `prices`; `clientId` is its id. The fragment publishes through Redis alone; afterwards the
// client must have got what was addressed to it, in order, and been closed with 4000.
import assert from 'node:assert/strict'
import Fastify from 'fastify'
import WebSocket from 'ws'
import wsStabilizer from 'fastify-websocket-stabilizer'
import { RedisAdapter } from 'fastify-websocket-stabilizer/redis'

assert.ok(process.env.REDIS_URL, 'REDIS_URL is set')
const app = Fastify()
await app.register(wsStabilizer, { adapter: new RedisAdapter({ url: process.env.REDIS_URL, prefix: 'myapp-prod' }) })
app.get('/ws', { websocket: true, config: { ws: { rooms: ['prices'], identify: () => ({ clientId: 'alice-phone', userId: 'alice' }) } } }, () => {})
await app.listen({ port: 0, host: '127.0.0.1' })
const ws = new WebSocket(`ws://127.0.0.1:${app.server.address().port}/ws`)
const received = []
ws.on('message', data => received.push(JSON.parse(data.toString())))
const closed = new Promise(resolve => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })))
await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
const clientId = 'alice-phone' // eslint-disable-line no-unused-vars -- the fragment's

// readme-fragment

assert.deepEqual(await closed, { code: 4000, reason: 'bye' })
assert.deepEqual(received, [{ price: 42 }, { invoice: 'paid' }, { just: 'you' }, { typing: true }])
await app.close()
