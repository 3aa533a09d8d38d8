/*
 * What the one-channel scheme costs an instance: the CPU time it spends on messages it
 * receives from Redis but has no local recipient for (room messages for rooms it has no
 * member in), with and without a replay log. Run: node --import <tap's ts loader> test/bench/cluster-channel.ts
 * (or `npm run bench:channel`). Needs redis-server.
 */
import { Redis } from 'ioredis'
import Fastify from 'fastify'
import wsStabilizer from '../../plugin.ts'
import { RedisAdapter } from '../../lib/adapters/redis.ts'
import { encodeClusterMessage } from '../../lib/adapters/cluster-codec.ts'
import { RedisServer } from '../redis-server.ts'

const N = 50_000
const redis = await new RedisServer().start()
try {
  for (const replay of [false, true]) {
    const prefix = `bench${String(replay)}`
    const app = Fastify()
    await app.register(wsStabilizer, { adapter: new RedisAdapter({ url: redis.url, prefix }) })
    app.get('/ws', { websocket: true, config: { ws: replay ? { reconnect: true } : {} } }, () => {})
    await app.ready()
    const publisher = new Redis(redis.url)
    const payload = Buffer.from(JSON.stringify({ type: 'said', room: 'r', from: 'someone', text: 'x'.repeat(64) }))
    const message = encodeClusterMessage('elsewhere', { type: 'broadcast', rooms: ['nobody-here'], data: payload, binary: false, json: true, id: 'elsewhere:1' })
    let received = 0
    const adapter = app.wsManager.adapter as RedisAdapter
    const before = process.cpuUsage()
    const start = process.hrtime.bigint()
    // the publisher's own work runs in this process too; measured apart below and taken off
    for (let i = 0; i < N; i++) publisher.publish(`${prefix}:msg`, message).catch(() => {})
    while (received < N) {
      await new Promise(resolve => setTimeout(resolve, 20))
      received = adapter.health().received as number
    }
    const used = process.cpuUsage(before)
    const wall = Number(process.hrtime.bigint() - start) / 1e6
    const baseBefore = process.cpuUsage()
    const sink = new Redis(redis.url)
    await sink.subscribe('unrelated')
    for (let i = 0; i < N; i++) publisher.publish(`${prefix}:other`, message).catch(() => {})
    await publisher.ping()
    const base = process.cpuUsage(baseBefore)
    const netUs = (used.user + used.system - base.user - base.system) / N
    process.stdout.write(`replay log ${replay ? 'on ' : 'off'}: ${N} messages with no local recipient, ${netUs.toFixed(2)} µs CPU each (receive + decode + ${replay ? 'log + ' : ''}lookup), ${(N / wall * 1000).toFixed(0)} msg/s\n`)
    sink.disconnect()
    publisher.disconnect()
    await app.close()
  }
} finally {
  await redis.stop()
}
