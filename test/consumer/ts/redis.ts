/* Many instances as one: the Redis adapter with the user's own ioredis clients. */
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import wsStabilizer, { type WsAdapter } from 'fastify-websocket-stabilizer'
import { RedisAdapter, type RedisAdapterOptions } from 'fastify-websocket-stabilizer/redis'

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
