// For the README's browser client fragment: what a page gives it (`location`, a global
// WebSocket) and its functions (`loadPrices`, `render`, `showOffline`), and the server of the
// route it connects to, on a free port. There is no TLS here, so the page's WebSocket takes
// `wss://` to the same server over `ws://`. The server sends one price; `render` shows it and
// closes the client, which ends the fragment's `for await` loop.
/* global client -- the fragment's */
/* eslint no-unused-vars: ['error', { varsIgnorePattern: '^(loadPrices|showOffline|render)$' }] -- the page's functions, called by the fragment */
import assert from 'node:assert/strict'
import Fastify from 'fastify'
import WS from 'ws'
import wsStabilizer from 'fastify-websocket-stabilizer'

const server = Fastify()
await server.register(wsStabilizer, { heartbeat: { mode: 'message' }, reconnect: { secret: 'browser-harness-secret' } })
server.get('/feed', { websocket: true, config: { ws: { reconnect: true } } }, (socket, request) => {
  request.wsConnection.join(request.query.room)
  request.wsConnection.send({ price: 42 })
})
await server.listen({ port: 0, host: '127.0.0.1' })

globalThis.location = { host: `127.0.0.1:${server.server.address().port}` }
globalThis.WebSocket = class extends WS {
  constructor (url, protocols) {
    super(url.replace(/^wss:/, 'ws:'), protocols)
  }
}
const rendered = []
const offline = []
let loads = 0
function loadPrices () { loads++ }
function showOffline (err) { offline.push(err) }
function render (price) {
  rendered.push(price)
  assert.deepEqual(server.wsManager.getRoomMembers('prices').length, 1, 'in the room of its query')
  client.close()
}

// readme-fragment

assert.deepEqual(rendered, [{ price: 42 }])
assert.deepEqual(offline, [])
assert.equal(loads, 0, 'a first connection is no failed resume')
await server.close()
