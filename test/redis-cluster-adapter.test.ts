import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { Cluster, type Redis } from 'ioredis'
import { RedisAdapter, RedisEmitter } from '../lib/adapters/redis.ts'
import { EmitFailedError } from '../lib/errors.ts'
import { buildApp, connect, until, type TestClient } from './helpers.ts'
import { redisClusterAvailable, startRedisCluster, type RedisCluster } from './redis-cluster.ts'

/*
 * The Redis adapter on a Redis Cluster (3 masters, 3 replicas): two instances deliver to
 * each other with your Cluster clients and with clients made from `nodes`, classic and
 * sharded; a client resumes on the other instance (its session, token nonces and the log
 * copy are in three slots); the emitter reaches the clients; and a SCAN of every master
 * at the end finds every key with a TTL, or gone after a close.
 */

interface Welcome { type: 'welcome', clientId: string, token: string, offset: number, resumed: boolean, replayed?: number }
interface Frame { type: 'message', offset?: number, data: unknown }

const SECRET = 'redis-cluster-adapter-secret-012'
const skip = !redisClusterAvailable() && 'redis-server or redis-cli is not installed'

type Tap = Parameters<typeof buildApp>[0]

async function instance (t: Tap, adapter: RedisAdapter): Promise<FastifyInstance> {
  return await buildApp(t, { adapter, reconnect: { secret: SECRET } }, app => {
    app.get('/ws', { websocket: true, config: { ws: { reconnect: true, identify: r => ({ userId: (r.query as { user?: string }).user }) } } }, (_socket, request) => {
      const room = (request.query as { room?: string }).room
      if (room !== undefined) request.wsConnection!.join(room)
    })
  })
}

function dropTcp (client: TestClient): void {
  (client.ws as unknown as { _socket: { destroy (): void } })._socket.destroy()
}

/** Every key under the prefix on every master, with its PTTL (-1: none). */
async function keysOnMasters (cluster: RedisCluster, prefix: string): Promise<Array<{ key: string, ttl: number }>> {
  const found: Array<{ key: string, ttl: number }> = []
  for (const port of cluster.masters()) {
    const node = cluster.node(port)
    try {
      let cursor = '0'
      do {
        const [next, keys] = await node.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 100)
        cursor = next
        for (const key of keys) found.push({ key, ttl: await node.pttl(key) })
      } while (cursor !== '0')
    } finally {
      node.disconnect()
    }
  }
  return found.filter(k => k.ttl !== -2).sort((a, b) => a.key.localeCompare(b.key))
}

test('on a Redis Cluster', { skip }, async (t) => {
  const cluster = await startRedisCluster(t)

  for (const pubsub of ['classic', 'sharded'] as const) {
    t.test(`your Cluster clients, ${pubsub}: delivery both ways, a resume on the other instance, the emitter; they stay open`, async (t) => {
      const prefix = `yours-${pubsub}`
      const clients: Cluster[] = []
      const cluster$ = (options = {}): Cluster => {
        const client = new Cluster(cluster.startupNodes, options)
        clients.push(client)
        return client
      }
      t.teardown(() => { for (const client of clients) client.disconnect() })
      // one with a subscriber of yours, one whose subscriber the adapter duplicates
      const a = await instance(t, new RedisAdapter({ client: cluster$(), subscriber: cluster$({ shardedSubscribers: pubsub === 'sharded' }), pubsub, shards: 4, prefix }))
      const b = await instance(t, new RedisAdapter({ client: cluster$(), pubsub, shards: 4, prefix }))
      for (const app of [a, b]) await until(async () => (await app.wsManager.adapter.presence.remoteInstances()).length === 1, 3000, 'each instance sees the other')
      t.equal((a.wsManager.adapter as RedisAdapter).channels.length, pubsub === 'sharded' ? 4 : 1)

      const onA = await connect(a, '/ws?user=ann&room=news')
      const welcome = await onA.json<Welcome>()
      const onB = await connect(b, '/ws?user=bob&room=news')
      await onB.json<Welcome>()
      await b.wsManager.broadcast({ from: 'b' }, { room: 'news' })
      t.match(await onA.json<Frame>(), { data: { from: 'b' } })
      t.match(await onB.json<Frame>(), { data: { from: 'b' } })
      await a.wsManager.broadcast({ from: 'a' }, { room: 'news' })
      t.match(await onA.json<Frame>(), { data: { from: 'a' } })
      t.match(await onB.json<Frame>(), { data: { from: 'a' } })

      const emitter = new RedisEmitter({ client: cluster$(), pubsub, shards: 4, prefix })
      // how many subscribers the node that took it has: on a Cluster, maybe none of them
      t.type(await emitter.broadcast({ from: 'emitter' }, { room: 'news' }), 'number', 'Redis took it')
      const seen = await onA.json<Frame>()
      t.match(seen, { data: { from: 'emitter' } })
      t.match(await onB.json<Frame>(), { data: { from: 'emitter' } })

      // ann drops; what is sent meanwhile is replayed on b
      dropTcp(onA)
      await until(() => a.wsManager.getConnectionCount() === 0)
      await b.wsManager.broadcast({ n: 1 }, { room: 'news' })
      await emitter.sendToUser('ann', { n: 2 })
      t.match(await onB.json<Frame>(), { data: { n: 1 } })
      await new Promise(resolve => setTimeout(resolve, 100))
      const back = await connect(b, `/ws?user=ann&resume=${welcome.token}&offset=${seen.offset!}`)
      t.match(await back.json<Welcome>(), { clientId: welcome.clientId, resumed: true, replayed: 2 })
      // from two senders on two shards: each one's order is kept, not the order between them
      const replayed = [(await back.json<Frame>()).data, (await back.json<Frame>()).data] as Array<{ n: number }>
      t.same(replayed.sort((x, y) => x.n - y.n), [{ n: 1 }, { n: 2 }])
      await emitter.close()
      await back.close()
      await onB.close()
      await a.close()
      await b.close()
      for (const client of clients.slice(0, 3)) t.equal(client.status, 'ready', 'your clients are left open')
    })
  }

  t.test('clients made from nodes, sharded: the keys of a resume, the emitter from nodes; every key expires or is gone after close', async (t) => {
    const prefix = 'keys'
    const adapter = (): RedisAdapter => new RedisAdapter({ nodes: cluster.startupNodes, clusterOptions: { redisOptions: { connectTimeout: 1000 } }, pubsub: 'sharded', prefix, presenceTtl: 600 })
    const a = await instance({ after: () => {} } as unknown as Tap, adapter())
    const b = await instance(t, adapter())
    for (const app of [a, b]) await until(async () => (await app.wsManager.adapter.presence.remoteInstances()).length === 1, 3000, 'each instance sees the other')
    const onA = await connect(a, '/ws?user=ann&room=news')
    const welcome = await onA.json<Welcome>()
    const emitter = new RedisEmitter({ nodes: cluster.startupNodes, pubsub: 'sharded', prefix })
    t.ok(await emitter.broadcast({ n: 1 }, { room: 'news' }) >= 1, 'SPUBLISH counts the shard\'s subscribers: both instances')
    const first = await onA.json<Frame>()
    t.match(first, { data: { n: 1 } })
    await emitter.close()
    await t.rejects(emitter.send('x', 'y'), EmitFailedError, 'closed')

    // a resume on b: a session, a nonce, a released pair when the welcome is never acknowledged
    dropTcp(onA)
    await until(() => a.wsManager.getConnectionCount() === 0)
    await new Promise(resolve => setTimeout(resolve, 50))
    const back = await connect(b, `/ws?user=ann&resume=${welcome.token}&offset=${first.offset!}`)
    const again = await back.json<Welcome>()
    t.match(again, { clientId: welcome.clientId, resumed: true })
    dropTcp(back)
    await until(() => b.wsManager.getConnectionCount() === 0)
    await new Promise(resolve => setTimeout(resolve, 50))
    // either token may be used once: the first one's partner was claimed with it
    const third = await connect(b, `/ws?user=ann&resume=${again.token}&offset=${first.offset!}`)
    t.match(await third.json<Welcome>(), { clientId: welcome.clientId, resumed: true })
    const stale = await connect(b, `/ws?user=ann&resume=${welcome.token}`)
    t.notMatch(await stale.json<Welcome>(), { resumed: true }, 'a token used before is refused')
    await stale.close()

    const kinds = new Set((await keysOnMasters(cluster, prefix)).map(({ key }) => key.split(':')[1]))
    for (const kind of ['instance', 'instances', 'presence', 'users', 'nonce', 'session', 'log']) t.ok(kinds.has(kind), `a ${kind} key was written`)
    t.same((await keysOnMasters(cluster, prefix)).filter(k => k.ttl === -1), [], 'every key expires')
    await third.close()
    await a.close()
    await until(async () => !(await keysOnMasters(cluster, prefix)).some(k => k.key.includes(a.wsManager.instanceId) && !k.key.includes(':log:') && !k.key.includes(':presence:')), 2000, 'a\'s keys gone')
    t.same((await keysOnMasters(cluster, prefix)).filter(k => k.ttl === -1), [], 'every key expires, after a close too')
  })

  t.test('the emitter on a Cluster that is gone rejects with EmitFailedError', async (t) => {
    const emitter = new RedisEmitter({ nodes: [{ host: '127.0.0.1', port: 1 }], clusterOptions: { clusterRetryStrategy: () => null } })
    await t.rejects(emitter.broadcast('x'), EmitFailedError)
    await emitter.close()
  })
})

export type { Redis }
