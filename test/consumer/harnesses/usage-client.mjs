// Against the README's Usage program (it listens on port 3000 until stopped): two users in
// room `general`, as the README connects them; one's message reaches the other as the
// broadcast says, and /stats counts both connections.
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import WebSocket from 'ws'

async function open (user) {
  for (;;) {
    const ws = new WebSocket(`ws://localhost:3000/chat/general?user=${user}`)
    const opened = await new Promise((resolve, reject) => {
      ws.once('open', () => resolve(true))
      ws.once('error', (err) => err.code === 'ECONNREFUSED' ? resolve(false) : reject(err))
    })
    if (opened) return ws
    await sleep(100) // not listening yet
  }
}

const ann = await open('ann')
const bob = await open('bob')
const received = new Promise((resolve) => ann.once('message', (data) => resolve(JSON.parse(data.toString()))))
bob.send('hello ann')
assert.deepEqual(await received, { from: 'bob', text: 'hello ann' })
const stats = await (await fetch('http://localhost:3000/stats')).json()
assert.equal(stats.connections, 2)
for (const ws of [ann, bob]) {
  const closed = new Promise((resolve) => ws.once('close', resolve))
  ws.close()
  await closed
}
