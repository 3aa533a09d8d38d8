/* Many instances as one: the Redis adapter with the user's own ioredis clients. */
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import wsStabilizer, { EmitFailedError, type WsAdapter } from 'fastify-websocket-stabilizer'
import { RedisAdapter, RedisEmitter, type RedisAdapterOptions, type RedisEmitterOptions } from 'fastify-websocket-stabilizer/redis'

const client = new Redis('redis://127.0.0.1:6379', { lazyConnect: true })
const options: RedisAdapterOptions = { client, prefix: 'chat', maxQueue: 500, presenceTtl: 15_000, closeClients: true }
const adapter: WsAdapter = new RedisAdapter(options)
const fromUrl = new RedisAdapter({ url: 'redis://127.0.0.1:6379/1', redisOptions: { connectTimeout: 1000 } })

const app = Fastify()
await app.register(wsStabilizer, { adapter })
// @ts-expect-error: the prefix is a string
export const wrong = new RedisAdapter({ prefix: 1 })

app.get('/health', async () => ({
  adapter: app.wsManager.adapter.name,
  health: app.wsManager.health(),
  users: await app.wsManager.cluster.getUserCount(),
  other: fromUrl.name
}))

// a worker without sockets publishes to the instances' clients
const emitterOptions: RedisEmitterOptions = { url: 'redis://127.0.0.1:6379', prefix: 'chat' }
const emitter = new RedisEmitter(emitterOptions)
export async function notify (clientId: string): Promise<number> {
  try {
    const instances: number = await emitter.broadcast({ price: 42 }, { room: 'prices', exclude: clientId })
    await emitter.sendToUser('alice', 'hello', { volatile: true })
    await emitter.send(clientId, Buffer.from([1]))
    await emitter.disconnect(clientId, 4000, 'bye')
    return instances
  } catch (err) {
    if (err instanceof EmitFailedError) return 0
    throw err
  } finally {
    await emitter.close()
  }
}
// @ts-expect-error: a room is a string or strings
export const wrongRoom = emitter.broadcast('x', { room: 1 })
export const fromClient = new RedisEmitter({ client, prefix: 'chat' })
