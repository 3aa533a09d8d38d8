// For a README fragment that registers the plugin on an `app` of its own: the app, and the
// plugin's default export under the README's name. Afterwards the app must start and close.
import Fastify from 'fastify'
import wsStabilizer from 'fastify-websocket-stabilizer' // eslint-disable-line no-unused-vars -- the fragment's

const app = Fastify()

// readme-fragment

await app.ready()
await app.close()
