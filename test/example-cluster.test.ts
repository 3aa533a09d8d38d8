import { test } from 'tap'
import { buildCluster } from '../examples/cluster.ts'
import { connect } from './helpers.ts'
import { redisAvailable, startRedis } from './redis-server.ts'

test('the cluster example: two instances, one chat, counts across both, health for probes', { skip: !redisAvailable() && 'redis-server is not installed' }, async (t) => {
  const redis = await startRedis(t)
  const [one, two] = await buildCluster({ redisUrl: redis.url, prefix: 'example-test', logger: false })
  t.teardown(async () => { await one.close(); await two.close() })
  await one.listen({ port: 0, host: '127.0.0.1' })
  await two.listen({ port: 0, host: '127.0.0.1' })

  const ann = await connect(one, '/ws?user=ann')
  const bob = await connect(two, '/ws?user=bob')
  t.match(await ann.json(), { type: 'welcome', user: 'ann' })
  t.match(await bob.json(), { type: 'welcome', user: 'bob' })
  ann.send({ type: 'say', text: 'hello from one', room: 'lobby' })
  t.match(await bob.json(), { type: 'said', from: 'ann', text: 'hello from one' })
  t.match(await ann.json(), { type: 'said', from: 'ann' })

  const cluster = (await one.inject('/cluster')).json()
  t.match(cluster, { here: 1, connections: 2 })
  t.same(cluster.users.sort(), ['ann', 'bob'])
  t.equal((await two.inject('/health')).statusCode, 200)

  await redis.stop()
  const { until } = await import('./helpers.ts')
  await until(async () => (await two.inject('/health')).statusCode === 503, 3000, 'not ready while Redis is away')
  await ann.close()
  await bob.close()
})
