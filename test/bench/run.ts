import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { RedisServer } from '../redis-server.ts'
import { clientKind, type ContenderName } from './servers.ts'
import type { Cpu, Mem, ServerCommand } from './server.ts'
import type { ConnectResult, ExpectResult, LoadCommand } from './load.ts'
import { add, medians, table, type Metric, type Samples } from './report.ts'
import { build } from './build.ts'
import { Child as BenchChild } from './child.ts'

/*
 * `npm run bench` (issue 7): raw ws, @fastify/websocket, Socket.IO and this plugin side by
 * side on loopback, then Socket.IO + redis-adapter against this plugin's RedisAdapter on two
 * processes each. Every server runs in a child process of its own, the clients in another.
 * `--quick` runs once with fewer clients. Results: test/bench/results/bench-results.{md,json}.
 * For one figure at a time: `--only=ws,plugin` (contenders), `--part=idle` or `--part=fanout`
 * (single-process parts), `--idle=10000` (idle connections), `--runs=N`. `--part=upstream`:
 * what numbering the client's messages costs (upstream.ts), alone. `plugin+flush` is the plugin
 * with `flush: { delay: 1 }` (write coalescing; `FLUSH_DELAY=ms` for another), in the fan-out part only.
 */

const quick = process.argv.includes('--quick')
const only = process.argv.find(a => a.startsWith('--only='))?.slice(7).split(',')
const config = quick
  ? { runs: 1, small: 200, large: 1000, idle: 2000, cluster: 1000, broadcasts: 50, latency: 20, heartbeat: 1000, window: 3000, budget: 300 }
  : { runs: 3, small: 1000, large: 5000, idle: 10_000, cluster: 2000, broadcasts: 200, latency: 40, heartbeat: 1000, window: 5000, budget: 470 }
const part = process.argv.find(a => a.startsWith('--part='))?.slice(7)
const idleArg = process.argv.find(a => a.startsWith('--idle='))?.slice(7)
if (idleArg !== undefined) config.idle = Number(idleArg)
const runs = Number(process.argv.find(a => a.startsWith('--runs='))?.slice(7) ?? config.runs)
const budget = Number(process.argv.find(a => a.startsWith('--budget='))?.slice(9) ?? config.budget)
const LATENCY_INTERVAL = 50

const here = fileURLToPath(new URL('.', import.meta.url))
// the children run the transpiled sources (see build.ts)
const childDir = `${build()}/test/bench/`
const resultsDir = `${here}results/`
const LONG_HEARTBEAT = 60_000
const STEP_TIMEOUT = 60_000
const started = performance.now()

if (part === 'upstream') {
  const { upstreamPart } = await import('./upstream.ts')
  await upstreamPart(childDir, resultsDir, runs, quick ? 4 : 10)
  process.exit(0)
}

type Child = BenchChild<ServerCommand | LoadCommand>

interface Server { child: Child, port: number, baseline: Mem }

async function startServer (name: ContenderName, heartbeat: number, redisUrl = '', prefix = ''): Promise<Server> {
  const child = new BenchChild<ServerCommand | LoadCommand>(childDir, 'server.ts', [name, String(heartbeat), redisUrl, prefix], true)
  const { port, mem } = await child.next<{ port: number, mem: Mem }>()
  return { child, port, baseline: mem }
}

async function startLoad (): Promise<Child> {
  const child = new BenchChild<ServerCommand | LoadCommand>(childDir, 'load.ts', [], false)
  await child.next()
  return child
}

function urlsOf (name: ContenderName, servers: Server[]): string[] {
  return servers.map(s => clientKind(name) === 'ws' ? `ws://127.0.0.1:${s.port}/ws` : `http://127.0.0.1:${s.port}`)
}

async function connect (load: Child, name: ContenderName, servers: Server[], count: number): Promise<ConnectResult> {
  const result = await load.ask<ConnectResult>({ cmd: 'connect', urls: urlsOf(name, servers), kind: clientKind(name), count, concurrency: 100, timeoutMs: STEP_TIMEOUT / 2 })
  if (result.failed > 0) process.stdout.write(`  ${name}: ${result.failed} of ${count} connections failed\n`)
  // every client registered on its server
  const deadline = Date.now() + 5000
  while (Date.now() < deadline) {
    let registered = 0
    for (const s of servers) registered += await s.child.ask<number>({ cmd: 'clients' })
    if (registered >= result.total) break
    await sleep(50)
  }
  return result
}

async function cpuOf (servers: Server[]): Promise<Cpu> {
  const all = await Promise.all(servers.map(s => s.child.ask<Cpu>({ cmd: 'cpu' })))
  return all.reduce((a, b) => ({ user: a.user + b.user, system: a.system + b.system }), { user: 0, system: 0 })
}

interface Fanout { deliveries: number, rate: number, user: number, system: number, p50: number, p99: number, complete: boolean }

/** `count` broadcasts from the first server; the load generator says when every client got them all. */
async function fanout (load: Child, servers: Server[], count: number, mode: 'paced' | 'burst' | 'interval', intervalMs = 0, record = false): Promise<Fanout> {
  load.process.send({ cmd: 'expect', perClient: count, record, timeoutMs: STEP_TIMEOUT / 2 } satisfies LoadCommand)
  await load.next()
  const before = await cpuOf(servers)
  const t0 = performance.timeOrigin + performance.now()
  const [sent, result] = await Promise.all([
    servers[0].child.ask<string>({ cmd: 'broadcast', count, mode, intervalMs }),
    load.next<ExpectResult>()
  ])
  if (sent !== 'sent') throw new Error(`broadcast failed: ${sent}`)
  const after = await cpuOf(servers)
  if (!result.complete) process.stdout.write(`  incomplete: ${result.received} of ${result.expected} messages arrived\n`)
  const n = Math.max(1, result.received)
  return {
    deliveries: result.received,
    rate: result.received / ((result.lastAt - t0) / 1000),
    user: (after.user - before.user) / n,
    system: (after.system - before.system) / n,
    p50: result.p50,
    p99: result.p99,
    complete: result.complete
  }
}

function sleep (ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms))
}

const samples: Samples = {}

/** Fan-out, CPU and latency at `small` then `large` clients, on one server process. */
async function fanoutRun (name: ContenderName): Promise<void> {
  const [server, load] = await Promise.all([startServer(name, LONG_HEARTBEAT), startLoad()])
  try {
    await connect(load, name, [server], config.small)
    await fanout(load, [server], 20, 'paced') // warm-up
    const small = await fanout(load, [server], config.broadcasts, 'paced')
    add(samples, name, 'rate1k', small.rate)
    add(samples, name, 'user1k', small.user)
    add(samples, name, 'sys1k', small.system)
    const burst = await fanout(load, [server], config.broadcasts, 'burst')
    add(samples, name, 'rateBurst', burst.rate)
    add(samples, name, 'userBurst', burst.user)
    add(samples, name, 'sysBurst', burst.system)
    const lat = await fanout(load, [server], config.latency, 'interval', LATENCY_INTERVAL, true)
    add(samples, name, 'p50_1k', lat.p50)
    add(samples, name, 'p99_1k', lat.p99)
    await connect(load, name, [server], config.large - config.small)
    const large = await fanout(load, [server], config.broadcasts, 'paced')
    add(samples, name, 'rate5k', large.rate)
    add(samples, name, 'user5k', large.user)
    add(samples, name, 'sys5k', large.system)
  } finally {
    await Promise.all([load.stop({ cmd: 'close' }), server.child.stop({ cmd: 'exit' })])
  }
}

/** Memory per idle connection, connection setup rate and heartbeat CPU at `idle` connections. */
async function idleRun (name: ContenderName): Promise<void> {
  const [server, load] = await Promise.all([startServer(name, config.heartbeat), startLoad()])
  try {
    const connected = await connect(load, name, [server], config.idle)
    add(samples, name, 'connectRate', connected.opened / (connected.ms / 1000))
    await sleep(500)
    const mem = await server.child.ask<Mem>({ cmd: 'mem' })
    add(samples, name, 'rssPerConn', (mem.rss - server.baseline.rss) / connected.total)
    add(samples, name, 'heapPerConn', (mem.heapUsed - server.baseline.heapUsed) / connected.total)
    await sleep(config.heartbeat)
    const pings0 = await load.ask<number>({ cmd: 'pings' })
    const before = await cpuOf([server])
    const t0 = performance.now()
    await sleep(config.window)
    const after = await cpuOf([server])
    const seconds = (performance.now() - t0) / 1000
    const pings = await load.ask<number>({ cmd: 'pings' }) - pings0
    const cpuMs = (after.user + after.system - before.user - before.system) / 1000
    add(samples, name, 'heartbeatCpu', cpuMs / seconds)
    // the window holds a whole number of sweeps, give or take one (a 1 s interval, a 5 s window:
    // up to 20 % either way); per ping answered, the cost does not depend on how many fell in it
    add(samples, name, 'pingsPerInterval', pings / connected.total / (seconds * 1000 / config.heartbeat))
    add(samples, name, 'heartbeatCpuPerPing', cpuMs * 1000 / Math.max(1, pings))
    const left = await server.child.ask<number>({ cmd: 'clients' })
    if (left < connected.total) process.stdout.write(`  ${name}: ${connected.total - left} idle connections lost during the heartbeat window\n`)
  } finally {
    await Promise.all([load.stop({ cmd: 'close' }), server.child.stop({ cmd: 'exit' })])
  }
}

/** Two server processes through a private Redis; broadcasts from the first. */
async function clusterRun (name: ContenderName, redisUrl: string, run: number): Promise<void> {
  const prefix = `bench${run}${name.replace(/\W/g, '')}`
  const [a, b, load] = await Promise.all([startServer(name, LONG_HEARTBEAT, redisUrl, prefix), startServer(name, LONG_HEARTBEAT, redisUrl, prefix), startLoad()])
  const servers = [a, b]
  try {
    await connect(load, name, servers, config.cluster)
    await sleep(300)
    await fanout(load, servers, 20, 'paced') // warm-up, and proof that both instances deliver
    const paced = await fanout(load, servers, config.broadcasts, 'paced')
    add(samples, name, 'ratec', paced.rate)
    add(samples, name, 'userc', paced.user)
    add(samples, name, 'sysc', paced.system)
    const lat = await fanout(load, servers, config.latency, 'interval', LATENCY_INTERVAL, true)
    add(samples, name, 'p50c', lat.p50)
    add(samples, name, 'p99c', lat.p99)
  } finally {
    await Promise.all([load.stop({ cmd: 'close' }), ...servers.map(s => s.child.stop({ cmd: 'exit' }))])
  }
}

const local: ContenderName[] = (['ws', 'fastify-ws', 'socket.io', 'plugin', 'plugin+flush'] as const).filter(n => only === undefined || only.includes(n))
const clustered: ContenderName[] = (['socket.io+redis', 'plugin+redis'] as const).filter(n => part === undefined && (only === undefined || only.includes(n)))

function elapsed (): string {
  return `${((performance.now() - started) / 1000).toFixed(0)} s`
}

/*
 * Rounds: every contender once per round (interleaved, so drift on a shared machine spreads
 * over all of them); a new round starts only when the last one's duration still fits in
 * the time budget, so the whole run stays bounded.
 */
let rounds = 0
const redis = clustered.length > 0 ? await new RedisServer().start() : undefined
try {
  let last = 0
  while (rounds < runs && (rounds === 0 || (performance.now() - started) / 1000 + last < budget)) {
    const roundStart = performance.now()
    rounds++
    for (const name of local) {
      if (part !== 'idle') {
        process.stdout.write(`round ${rounds}: ${name} fan-out (${elapsed()})\n`)
        await fanoutRun(name)
      }
      // write coalescing changes nothing of an idle connection
      if (part !== 'fanout' && name !== 'plugin+flush') {
        process.stdout.write(`round ${rounds}: ${name} idle (${elapsed()})\n`)
        await idleRun(name)
      }
    }
    for (const name of clustered) {
      process.stdout.write(`round ${rounds}: ${name} (${elapsed()})\n`)
      await clusterRun(name, redis!.url, rounds)
    }
    last = (performance.now() - roundStart) / 1000
  }
} finally {
  await redis?.stop()
}
if (rounds < runs) process.stdout.write(`time budget of ${budget} s: ${rounds} round(s) instead of ${runs}\n`)

const S = config.small.toLocaleString('en-US')
const L = config.large.toLocaleString('en-US')
const I = config.idle.toLocaleString('en-US')
const localMetrics: Metric[] = [
  { key: 'rate1k', label: `fan-out, ${S} clients, ${config.broadcasts} broadcasts one per event-loop turn`, unit: 'deliveries/s', digits: 0 },
  { key: 'rate5k', label: `fan-out, ${L} clients, one per turn`, unit: 'deliveries/s', digits: 0 },
  { key: 'rateBurst', label: `fan-out, ${S} clients, ${config.broadcasts} broadcasts in one tick`, unit: 'deliveries/s', digits: 0 },
  { key: 'user1k', label: `server CPU user per delivery, ${S} clients`, unit: 'µs', digits: 2 },
  { key: 'sys1k', label: `server CPU sys per delivery, ${S} clients`, unit: 'µs', digits: 2 },
  { key: 'user5k', label: `server CPU user per delivery, ${L} clients`, unit: 'µs', digits: 2 },
  { key: 'sys5k', label: `server CPU sys per delivery, ${L} clients`, unit: 'µs', digits: 2 },
  { key: 'userBurst', label: `server CPU user per delivery, ${S} clients, one tick`, unit: 'µs', digits: 2 },
  { key: 'sysBurst', label: `server CPU sys per delivery, ${S} clients, one tick`, unit: 'µs', digits: 2 },
  { key: 'p50_1k', label: `latency p50, ${S} clients, a broadcast every ${LATENCY_INTERVAL} ms`, unit: 'ms', digits: 2 },
  { key: 'p99_1k', label: `latency p99, ${S} clients, a broadcast every ${LATENCY_INTERVAL} ms`, unit: 'ms', digits: 2 },
  { key: 'rssPerConn', label: `RSS per idle connection, ${I} connections`, unit: 'bytes', digits: 0 },
  { key: 'heapPerConn', label: `heap per idle connection, ${I} connections`, unit: 'bytes', digits: 0 },
  { key: 'connectRate', label: `connection setup, ${I} clients, 100 at a time`, unit: 'connections/s', digits: 0 },
  { key: 'heartbeatCpu', label: `heartbeat CPU, ${I} idle connections, ${config.heartbeat} ms interval`, unit: 'ms CPU/s', digits: 1 },
  { key: 'pingsPerInterval', label: 'heartbeat pings a connection answered per interval in that window', unit: 'pings', digits: 2 },
  { key: 'heartbeatCpuPerPing', label: 'heartbeat CPU per ping answered', unit: 'µs', digits: 2 }
]
const C = config.cluster.toLocaleString('en-US')
const clusterMetrics: Metric[] = [
  { key: 'ratec', label: `fan-out, ${C} clients on 2 processes, ${config.broadcasts} broadcasts one per turn`, unit: 'deliveries/s', digits: 0 },
  { key: 'userc', label: 'CPU user per delivery, both processes', unit: 'µs', digits: 2 },
  { key: 'sysc', label: 'CPU sys per delivery, both processes', unit: 'µs', digits: 2 },
  { key: 'p50c', label: `latency p50, a broadcast every ${LATENCY_INTERVAL} ms`, unit: 'ms', digits: 2 },
  { key: 'p99c', label: `latency p99, a broadcast every ${LATENCY_INTERVAL} ms`, unit: 'ms', digits: 2 }
]

function version (pkg: string): string {
  const path = fileURLToPath(new URL(`../../node_modules/${pkg}/package.json`, import.meta.url))
  return (JSON.parse(readFileSync(path, 'utf8')) as { version: string }).version
}

const packages = ['ws', '@fastify/websocket', 'fastify', 'socket.io', 'socket.io-client', '@socket.io/redis-adapter', 'ioredis']
const machine = [
  `- ${cpus().length} cores (nproc), ${cpus()[0]?.model ?? 'unknown CPU'}`,
  `- Node ${process.version}, ${packages.map(p => `${p} ${version(p)}`).join(', ')}`,
  `- \`npm run bench${quick ? ' -- --quick' : ''}\`: medians of ${rounds} run(s), ${new Date().toISOString()}, ${elapsed()}`
].join('\n')
const output = [
  '## Single process (ratios to raw ws)',
  '',
  table(samples, local, localMetrics, 'ws'),
  '',
  ...(clustered.length === 0
    ? []
    : ['## Two processes through Redis (ratios to Socket.IO + redis-adapter)', '', table(samples, clustered, clusterMetrics, 'socket.io+redis'), '']),
  machine,
  ''
].join('\n')
process.stdout.write(`\n${output}`)
mkdirSync(resultsDir, { recursive: true })
const file = quick ? 'bench-results-quick' : 'bench-results'
writeFileSync(`${resultsDir}${file}.md`, output)
writeFileSync(`${resultsDir}${file}.json`, JSON.stringify({ config, quick, medians: medians(samples) }, null, 2))
process.stdout.write(`\nwritten to test/bench/results/${file}.md and .json\n`)
