/*
 * Resume and replay seen from a Node client: `npm run example:reconnect`.
 *
 * Starts the chat server (examples/server.ts) on a free port and connects ann and bob with
 * this package's client (over `ws`). Ann talks; the server drops bob's socket, as a network
 * failure would; ann goes on talking; bob's client reconnects with its token and offset,
 * gets its session back (same clientId, same rooms) and the messages it missed, once each.
 */
import WebSocket from 'ws'
import { fileURLToPath } from 'node:url'
import { StabilizerClient } from '../lib/client/index.ts'
import { buildServer } from './server.ts'

interface ChatMessage { type: string, room?: string, from?: string, text?: string, user?: string, users?: string[] }

export interface DemoResult {
  /** The chat lines bob got live, and the ones replayed to him after the drop. */
  live: string[]
  replayed: string[]
  /** Bob's clientId before and after the drop. */
  clientIds: [string, string]
}

export async function runDemo (print: (line: string) => void): Promise<DemoResult> {
  const app = await buildServer()
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  const url = `ws://127.0.0.1:${port}/ws`
  print(`server: chat on ${url}`)

  const ann = new StabilizerClient<ChatMessage>(`${url}?user=ann`, { WebSocket, protocol: 'stabilizer' })
  // a fixed jitter (the delay is random in [0, 500 ms) otherwise), so that every run prints the same
  const bob = new StabilizerClient<ChatMessage>(`${url}?user=bob`, { WebSocket, protocol: 'stabilizer', reconnect: { initialDelay: 500 }, random: () => 0.8 })
  const result: DemoResult = { live: [], replayed: [], clientIds: ['', ''] }
  let replaying = 0
  let waiter: { count: number, resolve: () => void } | undefined
  const received = (): number => result.live.length + result.replayed.length
  /** Resolves once bob has `count` chat lines. */
  const bobHas = (count: number): Promise<void> => new Promise(resolve => {
    if (received() >= count) resolve()
    else waiter = { count, resolve }
  })

  bob.on('welcome', (frame) => {
    print(`bob:    welcome, clientId ${frame.clientId.slice(0, 8)}…, offset ${frame.offset}${frame.resumed ? ', resumed' : ''}`)
    result.clientIds[result.clientIds[0] === '' ? 0 : 1] = frame.clientId
  })
  bob.on('message', (message) => {
    const replayed = replaying > 0
    if (replayed) replaying--
    if (message.type === 'said') {
      print(`bob:    ${replayed ? '(replayed) ' : ''}${message.from}: ${message.text}`)
      ;(replayed ? result.replayed : result.live).push(message.text!)
      if (waiter !== undefined && received() >= waiter.count) waiter.resolve()
    } else if (message.type === 'joined' || message.type === 'left') {
      print(`bob:    ${replayed ? '(replayed) ' : ''}${message.user} ${message.type} #${message.room}`)
    }
  })
  bob.on('close', ({ code, willReconnect }) => print(willReconnect ? `bob:    connection lost (${code}), will reconnect` : `bob:    closed (${code})`))
  bob.on('reconnecting', ({ attempt, delay }) => print(`bob:    reconnecting, attempt ${attempt}, in ${delay} ms`))
  bob.on('resumed', ({ replayed }) => {
    replaying = replayed
    print(`bob:    resumed: the same session, ${replayed} missed messages follow`)
  })
  bob.on('resumeFailed', ({ reason }) => print(`bob:    a new session (${reason}): what was sent meanwhile is lost`))

  try {
    await bob.connect()
    await ann.connect()
    ann.send({ type: 'say', data: { room: 'lobby', text: 'hello bob' } })
    ann.send({ type: 'say', data: { room: 'lobby', text: 'are you there?' } })
    await bobHas(2)

    print('server: dropping bob\'s socket (no close frame, as when the network fails)')
    const gone = new Promise(resolve => app.wsManager.once('disconnect', resolve))
    for (const conn of app.wsManager.getUserConnections('bob')) conn.socket.terminate()
    await gone
    ann.send({ type: 'say', data: { room: 'lobby', text: 'bob? you missed this' } })
    ann.send({ type: 'say', data: { room: 'lobby', text: 'and this' } })
    print('ann:    said two things while bob was away')

    await bobHas(4)
    bob.send({ type: 'say', data: { room: 'lobby', text: 'back, and I got both' } })
    await bobHas(5)
  } finally {
    bob.close()
    ann.close()
    await app.close()
  }
  return result
}

/* c8 ignore start: the entry point runs only under `npm run example:reconnect` */
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await runDemo(line => console.log(line))
}
/* c8 ignore stop */
