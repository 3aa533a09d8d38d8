/*
 * Two instances of the example server as one, through Redis: `npm run example:cluster`.
 *
 *   REDIS_URL (default redis://127.0.0.1:6379), PORT (default 3001: the instances listen
 *   on PORT and PORT + 1), HOST (default 127.0.0.1: this machine only), WS_REDIS_PREFIX (default `example`), WS_RECONNECT_SECRET (default:
 *   one made at start, shared by the two instances).
 *
 * Open the chat on both, http://localhost:3001/?user=ann and http://localhost:3002/?user=bob:
 * what is said on one reaches the other, and a page resumes on either. GET /cluster on either port counts connections and users on both;
 * GET /health answers 503 while Redis is unreachable or the instance is draining, which is
 * what a load balancer's readiness probe wants.
 */
import type { FastifyInstance } from 'fastify'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { optionsFromEnv } from '../plugin.ts'
import { RedisAdapter } from '../lib/adapters/redis.ts'
import { buildServer, listenOptions } from './server.ts'

export interface ClusterOptions {
  redisUrl: string
  prefix: string
  logger: boolean
}

/** Builds the two instances (not listening yet), each with a Redis adapter of its own. */
export async function buildCluster (options: ClusterOptions): Promise<FastifyInstance[]> {
  const apps: FastifyInstance[] = []
  const env = optionsFromEnv()
  // one reconnect secret for both, so that a client resumes on either: WS_RECONNECT_SECRET, or one made for this run
  const reconnect = { ...env.reconnect, secret: env.reconnect?.secret ?? randomBytes(24).toString('base64url') }
  for (let i = 0; i < 2; i++) {
    const adapter = new RedisAdapter({ url: options.redisUrl, prefix: options.prefix })
    const app = await buildServer({ ...env, reconnect, adapter }, options.logger)
    app.get('/cluster', async () => ({
      instance: app.wsManager.instanceId,
      here: app.wsManager.getConnectionCount(),
      connections: await app.wsManager.cluster.getConnectionCount(),
      users: await app.wsManager.cluster.getActiveUsers()
    }))
    app.get('/health', async (_request, reply) => {
      const health = app.wsManager.health()
      return await reply.code(health.status === 'ok' ? 200 : 503).send(health)
    })
    apps.push(app)
  }
  return apps
}

/* c8 ignore start: the entry point runs only under `npm run example:cluster` */
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { port, host } = listenOptions(process.env, 3001)
  const apps = await buildCluster({ redisUrl: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', prefix: process.env.WS_REDIS_PREFIX ?? 'example', logger: true })
  await Promise.all(apps.map(async (app, i) => await app.listen({ port: port + i, host })))
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => { Promise.all(apps.map(async app => await app.close())).catch(() => process.exit(1)) })
  }
}
/* c8 ignore stop */
