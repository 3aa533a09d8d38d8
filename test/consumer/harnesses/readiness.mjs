// For the README's Kubernetes fragment: an `app` with the plugin. Afterwards /ready must
// answer 200 with the health, and SIGTERM must be handled.
import assert from 'node:assert/strict'
import Fastify from 'fastify'
import wsStabilizer from 'fastify-websocket-stabilizer'

const app = Fastify()
await app.register(wsStabilizer)

// readme-fragment

const ready = await app.inject('/ready')
assert.equal(ready.statusCode, 200)
assert.equal(ready.json().status, 'ok')
assert.ok(process.listenerCount('SIGTERM') >= 1, 'SIGTERM closes the app')
await app.close()
