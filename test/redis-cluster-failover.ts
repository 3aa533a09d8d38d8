import type { Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { RedisAdapter } from '../lib/adapters/redis.ts'
import type { GapInfo } from '../plugin.ts'
import { buildApp, connect, until, type TestClient } from './helpers.ts'
import { redisClusterAvailable, startRedisCluster } from './redis-cluster.ts'

/*
 * A master of the Redis Cluster is killed while two instances exchange messages: its
 * replica is promoted after the node timeout (1 s). Nothing crashes, delivery comes back
 * by itself, the instances hear of the gap, and a client resumes on the other instance
 * once the slots are served again. Run by redis-cluster-failover.test.ts (sharded) and
 * redis-cluster-failover-classic.test.ts, one cluster each, a file each (a failover takes
 * seconds: both in one file came near tap's timeout on a loaded machine).
 */

interface Welcome { type: 'welcome', clientId: string, token: string, offset: number, resumed: boolean }
interface Frame { type: 'message', offset?: number, data: { n: number } }

const SECRET = 'redis-cluster-failover-secret-01'
export const skip = !redisClusterAvailable() && 'redis-server or redis-cli is not installed'

function dropTcp (client: TestClient): void {
  (client.ws as unknown as { _socket: { destroy (): void } })._socket.destroy()
}

export const title = (pubsub: string): string => `a master killed during traffic, ${pubsub} pub/sub: delivery comes back, a gap, resumes work again`

export async function failover (t: Test, pubsub: 'classic' | 'sharded'): Promise<void> {
  const cluster = await startRedisCluster(t)
  const gaps: GapInfo[] = []
  const app = async (): Promise<FastifyInstance> => {
    const adapter = new RedisAdapter({
      nodes: cluster.startupNodes,
      // short retries: a lost node is tried again every 100 ms
      clusterOptions: { retryDelayOnFailover: 100, redisOptions: { connectTimeout: 500, commandTimeout: 500 } },
      pubsub,
      shards: 6,
      prefix: 'failover',
      presenceTtl: 3000
    })
    const instance = await buildApp(t, { adapter, reconnect: { secret: SECRET } }, app => {
      app.get('/ws', { websocket: true, config: { ws: { reconnect: true, rooms: ['news'] } } }, () => {})
    })
    instance.wsManager.on('gap', info => gaps.push(info))
    return instance
  }
  const a = await app()
  const b = await app()
  for (const instance of [a, b]) await until(async () => (await instance.wsManager.adapter.presence.remoteInstances()).length === 1, 3000, 'each instance sees the other')
  const onB = await connect(b, '/ws')
  const welcome = await onB.json<Welcome>()
  b.wsManager.join(welcome.clientId, 'news')

  // a sends every 20 ms; what reaches b's client is counted
  let n = 0
  const got: number[] = []
  let offset = 0
  onB.ws.on('message', (data: Buffer) => {
    const frame = JSON.parse(data.toString()) as Frame
    if (frame.type !== 'message') return
    got.push(frame.data.n)
    offset = frame.offset!
  })
  const traffic = setInterval(() => { a.wsManager.broadcast({ n: ++n }, { room: 'news' }).catch(() => {}) }, 20)
  t.teardown(() => clearInterval(traffic))
  await until(() => got.length >= 5, 3000, 'traffic flows')

  await cluster.kill(cluster.masters()[0])
  const after = n
  await until(() => got.some(m => m > after + 5), 15_000, 'delivery comes back by itself')
  await until(() => gaps.length > 0, 5000, 'a gap event')
  clearInterval(traffic)
  t.ok(gaps.length > 0, 'the instances heard of the gap')
  t.equal(a.wsManager.health().adapter?.status, 'up')

  // b's client drops and resumes on a from what it got last (before it, b's copy of the log
  // may have holes from the outage: a resume from there fails as a gap, rightly)
  await new Promise(resolve => setTimeout(resolve, 100))
  const last = got.length
  dropTcp(onB)
  await until(() => b.wsManager.getConnectionCount() === 0)
  await until(async () => await a.wsManager.broadcast({ n: ++n }, { room: 'news' }).then(() => true), 2000)
  await new Promise(resolve => setTimeout(resolve, 200))
  const back: TestClient = await connect(a, `/ws?resume=${welcome.token}&offset=${offset}`)
  const resumed = await back.json<Welcome>()
  t.match(resumed, { clientId: welcome.clientId, resumed: true }, `the resume works again (${String((resumed as { resumeFailed?: string }).resumeFailed ?? 'ok')})`)
  await back.close()
  t.ok(got.length >= last, 'no crash')
}
