import { test } from 'tap'
import { Cluster } from 'ioredis'
import WebSocket from 'ws'
import { RedisAdapter } from '../lib/adapters/redis.ts'
import { buildApp, until, urlOf } from './helpers.ts'
import { redisClusterAvailable, startRedisCluster } from './redis-cluster.ts'

/*
 * ioredis sends a command again when the Cluster connection it went out on closed before the
 * reply, after `retryDelayOnFailover`, the Cluster staying ready: a presence write may then
 * happen twice (a user's count incremented twice) or after a later one (the entry of a
 * connection that went, written after its removal). Once a node's connection is lost and the
 * retries are over, the instance writes its presence again: what such writes left goes.
 */

const skip = !redisClusterAvailable() && 'redis-server or redis-cli is not installed'

test('a Cluster that lost its connection to a node has the presence written again: a count written twice or a late entry does not stay', { skip }, async (t) => {
  const cluster = await startRedisCluster(t)
  const prefix = 'rewrite'
  const app = await buildApp(t, { adapter: new RedisAdapter({ nodes: cluster.startupNodes, prefix }) }, app => {
    app.get('/ws', { websocket: true, config: { ws: { identify: () => ({ userId: 'u1' }) } } }, () => {})
  })
  const socket = new WebSocket(urlOf(app, '/ws'))
  socket.on('error', () => {})
  t.teardown(() => socket.terminate())
  const id = app.wsManager.instanceId
  const users = `${prefix}:users:{${id}}`
  const presence = `${prefix}:presence:{${id}}`
  const admin = new Cluster(cluster.startupNodes)
  t.teardown(() => admin.disconnect())
  await until(async () => await admin.hget(users, 'u1') === '1', 5000, 'the user counted once')

  // what a command run twice, or late, leaves
  await admin.hincrby(users, 'u1', 1)
  await admin.hset(presence, 'gone-client', JSON.stringify({ u: 'u2', r: [] }))

  // the master of the instance's keys closes every client connection but this one
  const slot = await admin.cluster('KEYSLOT', `{${id}}`) as number
  const ranges = await admin.cluster('SLOTS')
  const port = ranges.find(([from, to]) => slot >= from && slot <= to)![2][1]
  const node = cluster.node(port)
  t.teardown(() => node.disconnect())
  const killed = await node.client('KILL', 'TYPE', 'normal', 'SKIPME', 'yes') as number
  t.ok(killed > 0, 'the adapter\'s connection to the node was closed')

  await until(async () => await admin.hget(users, 'u1') === '1' && await admin.hexists(presence, 'gone-client') === 0, 10_000, 'the presence written again')
  t.equal(await admin.hlen(presence), 1, 'the one live connection, written again')
  t.ok(await admin.pttl(users) > 0, 'the counts keep their expiry')
})
