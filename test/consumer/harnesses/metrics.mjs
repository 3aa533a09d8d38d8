// For the README's Prometheus fragment: an `app` and the plugin; afterwards /metrics must
// answer in Prometheus' text format with the plugin's metrics in it.
import assert from 'node:assert/strict'
import Fastify from 'fastify'
import wsStabilizer from 'fastify-websocket-stabilizer' // eslint-disable-line no-unused-vars -- the fragment's

const app = Fastify()

// readme-fragment

const response = await app.inject('/metrics')
assert.equal(response.statusCode, 200)
assert.match(response.headers['content-type'], /^text\/plain/)
assert.match(response.body, /^# TYPE ws_connections gauge$/m)
assert.match(response.body, /^ws_connects_total 0$/m)
await app.close()
