// For a TypeScript README fragment that adds a WebSocket route to `app`: the plugin is
// registered first; afterwards a client connects to /chat/general and the route must have
// put its connection in the room.
import assert from 'node:assert/strict'
import Fastify from 'fastify'
import wsStabilizer from 'fastify-websocket-stabilizer'
import { wsTesting } from 'fastify-websocket-stabilizer/testing'

const app = Fastify()
await app.register(wsStabilizer)

// readme-fragment

const client = await wsTesting(app).connect('/chat/general')
await new Promise(resolve => setImmediate(resolve))
assert.deepEqual(app.wsManager.getRoomMembers('general'), [app.wsManager.getActiveConnections()[0]])
await client.close()
await app.close()
