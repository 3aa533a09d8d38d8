/*
 * The latency of wsManager.cluster's operations on 3 instances, each a process of its own, on
 * one redis-server, with `clients` WebSocket clients each, all in a fourth process (over loopback): `cluster.broadcast` one at a
 * time and many in flight, `cluster.send` to a client on another instance, and for scale the
 * count of the live instances alone (the first of a broadcast's two steps) and the local
 * `broadcast`. Run: `npm run bench:cluster-ops` (or node --import <tap's ts loader>
 * test/bench/cluster-ops.ts [--clients=N] [--calls=N]). Needs redis-server.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import Fastify, { type FastifyInstance } from 'fastify'
import WebSocket from 'ws'
import wsStabilizer from '../../plugin.ts'
import { RedisAdapter } from '../../lib/adapters/redis.ts'
import { RedisServer } from '../redis-server.ts'

const arg = (name: string, def: number): number => Number(process.argv.find(a => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? def)
const clients = arg('clients', 100)
const calls = arg('calls', 500)
const PREFIX = 'benchops'

interface Listening { id: string, port: number }

/** One instance; its clients' ids are `<instanceId>-<n>`, all in room `r`. */
async function startInstance (url: string): Promise<FastifyInstance> {
  const app = Fastify()
  await app.register(wsStabilizer, { adapter: new RedisAdapter({ url, prefix: PREFIX }), heartbeat: { enabled: false } })
  app.get('/ws', { websocket: true, config: { ws: { rooms: ['r'], identify: r => ({ clientId: (r.query as { id: string }).id }) } } }, () => {})
  await app.listen({ port: 0, host: '127.0.0.1' })
  return app
}

function listening (app: FastifyInstance): Listening {
  return { id: app.wsManager.instanceId, port: (app.server.address() as { port: number }).port }
}

/** Stays until its stdin ends (the parent is done). */
function serveUntilEnd (end: () => Promise<unknown>): void {
  process.stdin.resume()
  process.stdin.on('end', () => { end().then(() => process.exit(0), () => process.exit(1)) })
}

if (process.argv[2] === 'instance') {
  const app = await startInstance(process.argv[3])
  process.stdout.write(JSON.stringify(listening(app)) + '\n')
  serveUntilEnd(async () => await app.close())
} else if (process.argv[2] === 'clients') {
  // every instance's clients, in a process of their own: they read what they are sent and do nothing else
  const [count, ...instances] = process.argv.slice(3)
  const sockets: WebSocket[] = []
  for (const { id, port } of instances.map(json => JSON.parse(json) as Listening)) {
    for (let i = 0; i < Number(count); i++) {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/ws?id=${id}-${i}`)
      await once(ws, 'open')
      sockets.push(ws)
    }
  }
  process.stdout.write('ready\n')
  serveUntilEnd(async () => { for (const ws of sockets) ws.terminate() })
} else {
  await main()
}

function quantiles (samples: number[]): string {
  const sorted = [...samples].sort((a, b) => a - b)
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
  return `median ${at(0.5).toFixed(3)} ms, p99 ${at(0.99).toFixed(3)} ms`
}

async function timed (n: number, fn: () => unknown): Promise<number[]> {
  const samples: number[] = []
  for (let i = 0; i < n; i++) {
    const start = process.hrtime.bigint()
    await fn()
    samples.push(Number(process.hrtime.bigint() - start) / 1e6)
  }
  return samples
}

async function main (): Promise<void> {
  const redis = await new RedisServer().start()
  const children: ChildProcess[] = []
  try {
    const child = async (...args: string[]): Promise<string> => {
      const started = spawn(process.execPath, [...process.execArgv, new URL(import.meta.url).pathname, ...args], { stdio: ['pipe', 'pipe', 'inherit'] })
      children.push(started)
      const [line] = await once(started.stdout!, 'data') as [Buffer]
      return line.toString().trim()
    }
    const remotes = [await child('instance', redis.url), await child('instance', redis.url)]
    const remoteIds = remotes.map(line => (JSON.parse(line) as Listening).id)
    const app = await startInstance(redis.url)
    const m = app.wsManager
    await child('clients', String(clients), ...remotes, JSON.stringify(listening(app)))
    while ((await m.adapter.presence.remoteInstances()).length < 2 || await m.cluster.getConnectionCount() < 3 * clients) await new Promise(resolve => setTimeout(resolve, 20))
    const expected = 3 * clients
    const check = (r: { total: number, partial: boolean }): void => {
      if (r.total !== expected || r.partial) throw new Error(`expected ${expected} exact, got ${JSON.stringify(r)}`)
    }
    // warm up
    for (let i = 0; i < 50; i++) check(await m.cluster.broadcast('w'))

    const lines: string[] = []
    const say = (text: string): void => { lines.push(text); process.stdout.write(text + '\n') }
    say(`3 instances (3 processes, one redis-server), ${clients} clients each (in a fourth process), ${calls} calls, Node ${process.version}`)
    say(`- live instances counted (remoteInstances, SMEMBERS + EXISTS pipeline): ${quantiles(await timed(calls, async () => await m.adapter.presence.remoteInstances()))}`)
    say(`- cluster.broadcast, one at a time (to ${expected} clients, exact counts): ${quantiles(await timed(calls, async () => check(await m.cluster.broadcast({ n: 1 }))))}`)
    say(`- cluster.broadcast to a room nobody is in (the round trip alone): ${quantiles(await timed(calls, async () => await m.cluster.broadcast('x', { room: 'empty' })))}`)
    const remote = `${remoteIds[0]}-0`
    say(`- cluster.send to a client on another instance: ${quantiles(await timed(calls, async () => {
      if (!await m.cluster.send(remote, 'x')) throw new Error('not delivered')
    }))}`)
    say(`- cluster.send to a client here (no Redis): ${quantiles(await timed(calls, async () => await m.cluster.send(`${m.instanceId}-0`, 'x')))}`)
    say(`- local broadcast (this instance only, nothing awaited but the call): ${quantiles(await timed(calls, async () => await m.broadcast({ n: 1 })))}`)
    const inFlight = 50
    const rounds = Math.max(1, Math.floor(calls / inFlight))
    const start = process.hrtime.bigint()
    for (let i = 0; i < rounds; i++) {
      for (const r of await Promise.all(Array.from({ length: inFlight }, async () => await m.cluster.broadcast({ n: i })))) check(r)
    }
    const seconds = Number(process.hrtime.bigint() - start) / 1e9
    say(`- ${inFlight} cluster.broadcast in flight at once: ${(rounds * inFlight / seconds).toFixed(0)} broadcasts/s, ${(seconds * 1000 / rounds).toFixed(1)} ms per batch of ${inFlight}`)
    await app.close()
  } finally {
    for (const child of children) child.stdin!.end()
    await Promise.all(children.map(async child => child.exitCode === null ? await once(child, 'exit') : undefined))
    await redis.stop()
  }
}
