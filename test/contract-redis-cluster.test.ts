import { test } from 'tap'
import { RedisAdapter } from '../lib/adapters/redis.ts'
import { adapterContract } from './adapter-contract.ts'
import { redisClusterAvailable, startRedisCluster } from './redis-cluster.ts'

const skip = !redisClusterAvailable() && 'redis-server or redis-cli is not installed'

for (const pubsub of ['classic', 'sharded'] as const) {
  test(`the adapter contract: Redis adapters on a private Redis Cluster, ${pubsub} pub/sub`, { skip }, async (t) => {
    const cluster = await startRedisCluster(t)
    let run = 0
    adapterContract(t, n => {
      // a prefix of their own per test, as separate environments sharing one cluster
      const prefix = `contract-${pubsub}${++run}`
      return Array.from({ length: n }, () => new RedisAdapter({ nodes: cluster.startupNodes, pubsub, shards: 4, prefix }))
    })
  })
}
