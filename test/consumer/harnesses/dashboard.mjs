// For the README's dashboard fragment: an `app` and the plugin; afterwards the installed package
// serves the page, its script and style (files of the tarball), refuses without the key (401)
// or with a wrong one (403), and its live socket opens with a ticket and sends ticks.
import assert from 'node:assert/strict'
import Fastify from 'fastify'
import WebSocket from 'ws'
import wsStabilizer from 'fastify-websocket-stabilizer' // eslint-disable-line no-unused-vars -- the fragment's

process.env.ADMIN_KEY ??= 'readme-admin-key'
const app = Fastify()

// readme-fragment

await app.listen({ port: 0, host: '127.0.0.1' })
const base = `127.0.0.1:${app.server.address().port}`
const key = { 'x-admin-key': process.env.ADMIN_KEY }
assert.equal((await fetch(`http://${base}/ws-admin`)).status, 401)
assert.equal((await fetch(`http://${base}/ws-admin`, { headers: { 'x-admin-key': 'wrong' } })).status, 403)
const page = await fetch(`http://${base}/ws-admin`, { headers: key })
assert.equal(page.status, 200)
assert.match(page.headers.get('content-security-policy'), /default-src 'self'; script-src 'self'/)
assert.match(await page.text(), /<script type="module" src="\/ws-admin\/dashboard.js">/)
for (const [file, type] of [['dashboard.js', /text\/javascript/], ['dashboard.css', /text\/css/], ['favicon.svg', /image\/svg/]]) {
  const answer = await fetch(`http://${base}/ws-admin/${file}`, { headers: key })
  assert.equal(answer.status, 200, file)
  assert.match(answer.headers.get('content-type'), type)
  assert.ok((await answer.text()).length > 100, `${file} is served from the package`)
}
const { ticket } = await (await fetch(`http://${base}/ws-admin/ticket`, { headers: key })).json()
const socket = new WebSocket(`ws://${base}/ws-admin/live`, ['wss-dashboard', `ticket.${ticket}`])
const types = await new Promise((resolve, reject) => {
  const seen = []
  socket.on('message', (data) => {
    seen.push(JSON.parse(data.toString()).type)
    if (seen.includes('tick')) resolve(seen)
  })
  socket.once('error', reject)
})
assert.equal(types[0], 'hello')
socket.close()
await app.close()
