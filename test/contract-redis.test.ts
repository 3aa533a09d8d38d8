import { test } from 'tap'
import { RedisAdapter } from '../lib/adapters/redis.ts'
import { adapterContract } from './adapter-contract.ts'
import { redisAvailable, startRedis } from './redis-server.ts'

test('the adapter contract: Redis adapters on one private redis-server', { skip: !redisAvailable() && 'redis-server is not installed' }, async (t) => {
  const redis = await startRedis(t)
  let run = 0
  adapterContract(t, n => {
    // a prefix of their own per test, as separate environments sharing one Redis
    const prefix = `contract${++run}`
    return Array.from({ length: n }, () => new RedisAdapter({ url: redis.url, prefix }))
  })
})
