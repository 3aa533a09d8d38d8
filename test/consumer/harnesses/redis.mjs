// For the README's Redis adapter fragment: an `app`, the plugin, and `clientId`, the id of a
// connection (here one that no instance has, so `disconnect` asks the others and returns
// false). REDIS_URL points at the suite's own redis-server. Afterwards the app must close,
// closing the adapter's Redis connections.
import assert from 'node:assert/strict'
import Fastify from 'fastify'
import wsStabilizer from 'fastify-websocket-stabilizer' // eslint-disable-line no-unused-vars -- the fragment's

assert.ok(process.env.REDIS_URL, 'REDIS_URL is set')
const app = Fastify()
const clientId = 'a-client-on-no-instance' // eslint-disable-line no-unused-vars -- the fragment's

// readme-fragment

assert.equal(await app.wsManager.cluster.getConnectionCount(), 0)
await app.close()
