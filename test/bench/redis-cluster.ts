/*
 * Single Redis, Redis Cluster with classic pub/sub, Redis Cluster with sharded pub/sub, in
 * one run: messages per second relayed between two adapters (one publishes, the other
 * receives and hands each message to its host), and the Redis CPU time per message (every
 * redis-server's used_cpu_sys + used_cpu_user from INFO, before and after, summed over
 * the cluster's 6 nodes). Run: `npm run bench:redis-cluster`. Needs redis-server and redis-cli.
 * The publisher and the receiver share this process, so the relayed rate is bounded by
 * this process too; the Redis CPU per message is what tells the schemes apart.
 */
import { Redis } from 'ioredis'
import pino from 'pino'
import { RedisAdapter } from '../../lib/adapters/redis.ts'
import type { ClusterMessage } from '../../lib/adapters/adapter.ts'
import { RedisServer } from '../redis-server.ts'
import { RedisCluster } from '../redis-cluster.ts'

const N = Number(process.env.N ?? 100_000)
const WINDOW = 5000
const log = pino({ level: 'silent' })
const payload = Buffer.from(JSON.stringify({ type: 'said', room: 'r', text: 'x'.repeat(64) }))

async function cpu (nodes: Redis[]): Promise<number> {
  let total = 0
  for (const node of nodes) {
    const info = await node.info('cpu')
    total += Number(/used_cpu_sys:([\d.]+)/.exec(info)![1]) + Number(/used_cpu_user:([\d.]+)/.exec(info)![1])
  }
  return total
}

/** Waits until `done`, or fails after 30 s (a message lost would otherwise keep it waiting). */
async function waitFor (done: () => boolean, next: () => Promise<unknown>): Promise<void> {
  const deadline = Date.now() + 30_000
  while (!done()) {
    if (Date.now() > deadline) throw new Error('bench:redis-cluster: messages lost, the receiver is stuck')
    await next()
  }
}

const tick = async (): Promise<unknown> => await new Promise(resolve => setImmediate(resolve))

async function run (name: string, make: () => RedisAdapter, nodes: Redis[]): Promise<{ name: string, rate: number, cpuUs: number }> {
  const sender = make()
  const receiver = make()
  let received = 0
  const host = (id: string) => ({ instanceId: id, log, deliver: () => { received++ }, gap: () => {} })
  await sender.start(host('sender'))
  await receiver.start(host('receiver'))
  const message = (i: number): ClusterMessage => ({ type: 'broadcast', rooms: ['r'], data: payload, binary: false, json: true, id: `sender:${i}` })
  // warm up
  for (let i = 0; i < 1000; i++) sender.publish(message(i))
  await waitFor(() => received >= 1000, tick)
  received = 0
  const before = await cpu(nodes)
  const start = process.hrtime.bigint()
  let sent = 0
  while (sent < N) {
    for (let i = 0; i < 1000 && sent < N; i++) sender.publish(message(sent++))
    await waitFor(() => sent - received <= WINDOW, tick)
  }
  await waitFor(() => received >= N, tick)
  const seconds = Number(process.hrtime.bigint() - start) / 1e9
  const used = await cpu(nodes) - before
  await sender.close()
  await receiver.close()
  return { name, rate: Math.round(N / seconds), cpuUs: Math.round(used / N * 1e6 * 100) / 100 }
}

const results = []
const single = await new RedisServer().start()
const cluster = await new RedisCluster().start()
const singleNode = [new Redis(single.url)]
const clusterNodes = cluster.nodes.map(n => cluster.node(n.port))
try {
  results.push(await run('single Redis, classic', () => new RedisAdapter({ url: single.url, prefix: 'bench' }), singleNode))
  results.push(await run('cluster (3 masters + 3 replicas), classic', () => new RedisAdapter({ nodes: cluster.startupNodes, prefix: 'bench-classic' }), clusterNodes))
  results.push(await run('cluster (3 masters + 3 replicas), sharded (16 shards)', () => new RedisAdapter({ nodes: cluster.startupNodes, prefix: 'bench-sharded', pubsub: 'sharded' }), clusterNodes))
} finally {
  for (const node of [...singleNode, ...clusterNodes]) node.disconnect()
  await single.stop()
  await cluster.stop()
}
process.stdout.write(`${N} messages of ${payload.length} bytes, one publishing adapter, one receiving\n`)
process.stdout.write('| setup | messages/s relayed | Redis CPU per message (µs, all nodes) |\n|---|---|---|\n')
for (const r of results) process.stdout.write(`| ${r.name} | ${r.rate} | ${r.cpuUs} |\n`)
