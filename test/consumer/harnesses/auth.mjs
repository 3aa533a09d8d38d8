// For the README's auth fragment: an `app` with the plugin, and `sessions`, a session store
// that knows two tokens: ann's, with the `chat` scope, and bob's, without. Afterwards ann
// connects, bob is refused with 403 and an unknown token with 401.
import assert from 'node:assert/strict'
import Fastify from 'fastify'
import wsStabilizer from 'fastify-websocket-stabilizer'
import { wsTesting } from 'fastify-websocket-stabilizer/testing'

const app = Fastify()
await app.register(wsStabilizer)
const known = {
  'ann-token': { id: 'ann', scopes: ['chat'], expiresAt: Date.now() + 60_000 },
  'bob-token': { id: 'bob', scopes: [], expiresAt: Date.now() + 60_000 }
}
const sessions = { lookup: async (token) => known[token] } // eslint-disable-line no-unused-vars -- the fragment's

// readme-fragment

const ws = wsTesting(app)
const bearer = (token) => ({ headers: { authorization: `Bearer ${token}` } })
await ws.connect('/chat', bearer('ann-token'))
assert.deepEqual(app.wsManager.getActiveUsers(), ['ann'])
await assert.rejects(ws.connect('/chat', bearer('bob-token')), { statusCode: 403 })
await assert.rejects(ws.connect('/chat', bearer('nobody')), { statusCode: 401 })
await ws.closeAll()
await app.close()
