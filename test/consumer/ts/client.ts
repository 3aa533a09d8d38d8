/* The reconnecting client, typed by what it receives (In) and sends (Out), in Node with ws. */
import WebSocket from 'ws'
import {
  StabilizerClient, ClientError, ClientErrorCodes, CloseCode, reconnectAdvice,
  type ClientErrorCode, type ClientOptions, type ClientState, type ResumeFailure
} from 'fastify-websocket-stabilizer/client'

type In = { type: 'price', symbol: string, price: number } | { type: 'news', text: string }
interface Order { type: 'order', symbol: string, qty: number }

const options: ClientOptions = {
  WebSocket,
  protocols: ['v1'],
  reconnect: { initialDelay: 100, maxDelay: 5_000 },
  heartbeat: { interval: 10_000, timeout: 30_000 },
  maxQueueSize: 100
}
const client = new StabilizerClient<In, Order>('ws://localhost:3000/feed', options)

client.on('message', (message) => {
  if (message.type === 'price') {
    const price: number = message.price
    client.send({ type: 'order', symbol: message.symbol, qty: price > 10 ? 1 : 2 })
  } else {
    const text: string = message.text
    client.send(text)
  }
})
const seen: string[] = []
client.on('resumeFailed', ({ reason }) => { const why: ResumeFailure = reason; seen.push(why) })
client.on('resumed', ({ replayed }) => { seen.push(replayed.toFixed()) })
client.on('reconnecting', ({ attempt, delay }) => { seen.push(`${attempt + delay}`) })
client.on('close', ({ code, willReconnect }) => {
  if (!willReconnect) seen.push(reconnectAdvice(code))
})
client.on('error', (err) => {
  if (err instanceof ClientError) {
    const code: ClientErrorCode = err.code
    if (code === ClientErrorCodes.QUEUE_FULL) client.close(CloseCode.NORMAL)
  }
})

client.send(new Uint8Array([1, 2, 3]))
// @ts-expect-error: an Order needs a qty
client.send({ type: 'order', symbol: 'X' })
// @ts-expect-error: a number is not an Order, text or bytes
client.send(42)
// @ts-expect-error: no such event
client.on('nope', () => {})

const state: ClientState = client.state
const latency: number | undefined = client.latency
await client.connect()
for await (const message of client) {
  if (message.type === 'news') break
}
client.close(1000, 'done')
export const summary = { state, latency, id: client.clientId, seen }
