import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { RedisServer } from '../redis-server.ts'
import { build } from './build.ts'
import { Child } from './child.ts'
import { add, medians, table, type Metric, type Samples } from './report.ts'
import type { ScaleContender, ScaleServerCommand } from './scale-server.ts'
import type { ClientKind, ConnectResult, Report, RestartState, ScaleClientCommand, Seen } from './scale-clients.ts'

/*
 * `npm run bench:scale` (issue 18): N connections (default 100,000) with the heartbeat on,
 * held by P server processes on this machine (one process may open at most 20,000 files,
 * so at most ~17,000 sockets each) on one private redis-server, loaded by several client
 * processes of minimal clients (scale-clients.ts). Contenders in turn, in one run: raw ws
 * with the isAlive recipe broadcasting locally on every process, the plugin with its
 * RedisAdapter broadcasting from one instance, Socket.IO + @socket.io/redis-adapter
 * broadcasting from one instance.
 *
 * `--rolling`: the plugin on a resume route; the P instances are restarted one after
 * another (fastify.close(): 1012 to its clients; a new process on the same port) while a
 * broadcast goes out every second, and every client checks it gets each message once.
 *
 * Options: --connections=N, --servers=P, --clients=C (client processes), --heartbeat=ms,
 * --broadcasts=B, --only=ws,plugin+redis,socket.io+redis, --budget=s (the whole run is killed
 * past it), --settle=s (--rolling: how long a restart's clients get to come back).
 * Results: test/bench/results/scale-results.{md,json} (rolling-results with --rolling).
 */

const arg = (name: string): string | undefined => process.argv.find(a => a.startsWith(`--${name}=`))?.slice(name.length + 3)
/** The plugin's `shutdown.batchSize`/`batchInterval` (`--batch=1000/250`) and the servers' listen backlog (`--backlog=4096`), to the server processes. */
const batch = arg('batch')
const backlog = arg('backlog')
if (batch !== undefined) process.env.SCALE_BATCH = batch
if (backlog !== undefined) process.env.SCALE_BACKLOG = backlog
/** What the shutdown's batches add to a drain of `connections`. */
function batchesMs (connections: number): number {
  const [size, interval] = (batch ?? '0/0').split('/').map(Number)
  return size === 0 ? 0 : Math.ceil(connections / size) * interval
}
const N = Number(arg('connections') ?? 100_000)
const PER_PROCESS = 17_000
const P = Number(arg('servers') ?? Math.max(2, Math.ceil(N / PER_PROCESS)))
const C = Number(arg('clients') ?? Math.max(1, Math.ceil(N / PER_PROCESS)))
const HEARTBEAT = Number(arg('heartbeat') ?? 5000)
const B = Number(arg('broadcasts') ?? 5)
const rolling = process.argv.includes('--rolling')
/** The new instance starts on a new port and the clients go there (a load balancer's part), instead of taking the old one's port. */
const surge = process.argv.includes('--surge')
/*
 * Every wait grows with N: at 100,000 a contender takes ~5 min on this 2-core machine (setup at
 * ~1,000/s, two heartbeat timeouts, the broadcasts), the rolling restart ~12 min.
 */
const budget = Number(arg('budget') ?? (rolling ? Math.max(420, N * 0.012) : Math.max(600, N * 0.015)))
/** The time for every client process to open its share (~4 ms a connection, at least 2 min). */
const CONNECT_MS = Math.max(120_000, N * 4)
/** Waits for all N: registered on the servers, a broadcast seen by every client. */
const ALL_MS = Math.max(10_000, N / 5)
const SEEN_MS = Math.max(30_000, N / 2)
/** A server's stop, its clients' close handshakes included (~2 ms a socket, at least 20 s). */
const STOP_MS = Math.max(20_000, Math.ceil(N / P) * 2) + batchesMs(Math.ceil(N / P))
/**
 * How long the rolling restart waits for the moved clients to be back before it goes on to the
 * next instance (`--settle=s`; by default 4 ms a client of one instance, at least 60 s). A restart
 * that has not settled by then overlaps with the next one, as a rollout that does not wait would.
 */
const SETTLE_MS = arg('settle') === undefined ? Math.max(60_000, Math.ceil(N / P) * 4) : Number(arg('settle')) * 1000
const only = arg('only')?.split(',')
/*
 * The replay log's bounds on each instance of the rolling restart. A client that resumes on
 * another instance gets its missed messages logged again there, once for all the clients
 * that left the old log at the same point (a merge, lib/resume/log-merge.ts): every client
 * here gets every broadcast, so a restart adds a few merges. `--replay=default` keeps the
 * defaults (1000 messages, 1 MiB); by default the log holds 20 messages for each client of
 * an instance (~400 B each), as before the merges, when each client's copy was logged.
 */
const replay = arg('replay') === 'default' ? undefined : { messages: 20 * Math.ceil(N / P), bytes: 20 * Math.ceil(N / P) * 400 }
/** In flight at once, over all client processes. */
const CONCURRENCY = 200
const STEP = 60_000

const here = fileURLToPath(new URL('.', import.meta.url))
const resultsDir = `${here}results/`
const childDir = `${build()}/test/bench/`
const started = performance.now()

type Server = Child<ScaleServerCommand>
type Clients = Child<ScaleClientCommand>
const children = new Set<Child<never>>()

function log (line: string): void {
  process.stdout.write(`[${((performance.now() - started) / 1000).toFixed(1)} s] ${line}\n`)
}

/** The private redis-server's pid, once started: it goes with the children (a budget or failure exits without its stop). */
let redisPid: number | undefined

function killAll (): void {
  for (const child of children) child.kill()
  if (redisPid === undefined) return
  try {
    process.kill(redisPid, 'SIGKILL')
  } catch {}
  redisPid = undefined
}
// bounded: past the budget, or on any failure, every child goes
const deadline = setTimeout(() => {
  log(`budget of ${budget} s exceeded: stopping`)
  killAll()
  // the restarts measured so far are written as they are
  if (rolling && figures.length > 0) {
    const { output, json } = rollingResults(true)
    writeResults(output, json)
  }
  process.exit(2)
}, budget * 1000)
deadline.unref()
process.on('exit', killAll)
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130))

function sleep (ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms))
}

const now = (): number => performance.timeOrigin + performance.now()

/** TcpExt ListenOverflows of /proc/net/netstat: connections the kernel dropped because a listen queue was full (machine-wide). */
function listenOverflows (): number {
  try {
    const lines = readFileSync('/proc/net/netstat', 'latin1').split('\n').filter(l => l.startsWith('TcpExt:'))
    const names = lines[0].split(' ')
    return Number(lines[1].split(' ')[names.indexOf('ListenOverflows')])
  } catch {
    return NaN
  }
}

/** utime + stime of a process, in ms, from /proc (10 ms ticks). */
function cpuMs (pid: number | undefined): number {
  return sysMs(pid, true)
}

/** stime of a process, in ms: the kernel's part (syscalls, and on loopback the receiving side's TCP work); `all`: utime + stime. */
function sysMs (pid: number | undefined, all = false): number {
  if (pid === undefined) return 0
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return ((all ? Number(fields[11]) : 0) + Number(fields[12])) * 10
  } catch {
    return 0
  }
}

function spawnChild<T> (script: string, args: string[], gc: boolean): Child<T> {
  const child = new Child<T>(childDir, script, args, gc)
  children.add(child as Child<never>)
  child.exited.then(() => children.delete(child as Child<never>), () => {})
  return child
}

interface Started { server: Server, baseline: { rss: number, heapUsed: number } }

async function startServer (name: ScaleContender, redisUrl: string, prefix: string, port = 0): Promise<Started> {
  const tuning = name === 'plugin+resume' && replay !== undefined ? [String(replay.messages), String(replay.bytes)] : []
  const server = spawnChild<ScaleServerCommand>('scale-server.ts', [name, String(HEARTBEAT), redisUrl, prefix, String(port), ...tuning], true)
  const ready = await server.next<{ ready: true, mem: { rss: number, heapUsed: number } }>(STEP)
  return { server, baseline: ready.mem }
}

async function listen (server: Server): Promise<number> {
  const answer = await server.ask<{ port?: number, error?: string }>({ cmd: 'listen' }, STEP)
  if (answer.port === undefined) throw new Error(`listen failed: ${answer.error}`)
  return answer.port
}

async function startClients (): Promise<Clients[]> {
  const all = Array.from({ length: C }, () => spawnChild<ScaleClientCommand>('scale-clients.ts', [], false))
  await Promise.all(all.map(c => c.next(STEP)))
  return all
}

/** Every client process opens its share, spread over every port; the setup rate is of the whole. */
async function connectAll (clients: Clients[], ports: number[], kind: ClientKind): Promise<{ opened: number, failed: number, ms: number, errors: Record<string, number> }> {
  const t0 = performance.now()
  const results = await Promise.all(clients.map((c, i) => c.ask<ConnectResult>({
    cmd: 'connect',
    ports,
    kind,
    count: Math.floor(N / C) + (i < N % C ? 1 : 0),
    concurrency: Math.ceil(CONCURRENCY / C),
    timeoutMs: CONNECT_MS
  }, CONNECT_MS + STEP)))
  const errors: Record<string, number> = {}
  for (const r of results) for (const [k, v] of Object.entries(r.errors)) errors[k] = (errors[k] ?? 0) + v
  return { opened: results.reduce((a, r) => a + r.opened, 0), failed: results.reduce((a, r) => a + r.failed, 0), ms: performance.now() - t0, errors }
}

async function serverClients (servers: Server[]): Promise<number> {
  const counts = await Promise.all(servers.map(s => s.ask<number>({ cmd: 'clients' })))
  return counts.reduce((a, b) => a + b, 0)
}

async function untilRegistered (servers: Server[], expected: number, ms = ALL_MS): Promise<number> {
  const end = Date.now() + ms
  let registered = 0
  while (Date.now() < end) {
    registered = await serverClients(servers)
    if (registered >= expected) break
    await sleep(100)
  }
  return registered
}

async function seenBy (clients: Clients[], seq: number): Promise<Seen> {
  const all = await Promise.all(clients.map(c => c.ask<Seen>({ cmd: 'seen', seq })))
  return { count: all.reduce((a, s) => a + s.count, 0), last: Math.max(...all.map(s => s.last)) }
}

async function untilSeen (clients: Clients[], seq: number, expected: number, ms = SEEN_MS): Promise<Seen> {
  const end = Date.now() + ms
  let seen = await seenBy(clients, seq)
  while (seen.count < expected && Date.now() < end) {
    await sleep(20)
    seen = await seenBy(clients, seq)
  }
  return seen
}

/** Heartbeat pings the client processes answered so far. */
async function pingsAnswered (clients: Clients[]): Promise<number> {
  return (await Promise.all(clients.map(c => c.ask<number>({ cmd: 'pings' })))).reduce((a, n) => a + n, 0)
}

async function states (clients: Clients[]): Promise<RestartState> {
  const all = await Promise.all(clients.map(c => c.ask<RestartState>({ cmd: 'state' })))
  const sum = (key: 'open' | 'total' | 'moved' | 'resumed' | 'attempts'): number => all.reduce((a, s) => a + s[key], 0)
  const merge = (key: 'failed' | 'refused' | 'errors' | 'codes'): Record<string, number> => {
    const out: Record<string, number> = {}
    for (const s of all) for (const [k, v] of Object.entries(s[key])) out[k] = (out[k] ?? 0) + v
    return out
  }
  return {
    open: sum('open'),
    total: sum('total'),
    moved: sum('moved'),
    resumed: sum('resumed'),
    attempts: sum('attempts'),
    codes: merge('codes'),
    failed: merge('failed'),
    refused: merge('refused'),
    errors: merge('errors'),
    lastBackAt: Math.max(...all.map(s => s.lastBackAt)),
    lastAwayAt: Math.max(...all.map(s => s.lastAwayAt)),
    longestAway: Math.max(...all.map(s => s.longestAway))
  }
}

async function stopAll (clients: Clients[], servers: Server[]): Promise<void> {
  await Promise.all(clients.map(c => c.stop({ cmd: 'close' })))
  await Promise.all(servers.map(s => s.stop({ cmd: 'exit' }, STOP_MS)))
}

function total (record: Record<string, number>): number {
  return Object.values(record).reduce((a, b) => a + b, 0)
}

function describe (record: Record<string, number>): string {
  const entries = Object.entries(record)
  return entries.length === 0 ? '0' : entries.map(([k, v]) => `${k}: ${fmt(v)}`).join(', ')
}

const samples: Samples = {}
const notes: string[] = []

/** One contender: connect N, memory, idle through two heartbeat timeouts, B broadcasts to all. */
async function scaleRun (name: ScaleContender, redis: RedisServer, run: number): Promise<void> {
  const prefix = `scale${run}${name.replace(/\W/g, '')}`
  log(`${name}: starting ${P} servers and ${C} client processes`)
  const started = await Promise.all(Array.from({ length: P }, () => startServer(name, redis.url, prefix)))
  const servers = started.map(s => s.server)
  const clients = await startClients()
  try {
    const ports = await Promise.all(servers.map(listen))
    const kind: ClientKind = name === 'socket.io+redis' ? 'socket.io' : 'ws'
    const connected = await connectAll(clients, ports, kind)
    log(`${name}: ${connected.opened} of ${N} connected in ${(connected.ms / 1000).toFixed(1)} s (${connected.failed} failed${connected.failed > 0 ? `: ${describe(connected.errors)}` : ''})`)
    if (connected.failed > 0) notes.push(`${name}: ${connected.failed} of ${N} connections failed (${describe(connected.errors)})`)
    add(samples, name, 'connectRate', connected.opened / (connected.ms / 1000))
    const registered = await untilRegistered(servers, connected.opened)
    await sleep(1000)
    const mems = await Promise.all(servers.map(s => s.ask<{ rss: number, heapUsed: number }>({ cmd: 'mem' })))
    const rss = mems.reduce((a, m, i) => a + m.rss - started[i].baseline.rss, 0)
    const heap = mems.reduce((a, m, i) => a + m.heapUsed - started[i].baseline.heapUsed, 0)
    add(samples, name, 'rssPerConn', rss / registered)
    add(samples, name, 'heapPerConn', heap / registered)

    // idle: two heartbeat timeouts (the plugin's and Socket.IO's are 3 intervals, the recipe's at most 2)
    await sleep(HEARTBEAT)
    const idleMs = 2 * 3 * HEARTBEAT
    const pids = servers.map(s => s.pid)
    const cpu0 = pids.reduce((a, pid) => a + cpuMs(pid), 0)
    const sys0 = pids.reduce((a, pid) => a + sysMs(pid), 0)
    const redis0 = cpuMs(redis.pid)
    const pings0 = await pingsAnswered(clients)
    const t0 = performance.now()
    log(`${name}: idle for ${idleMs / 1000} s`)
    await sleep(idleMs)
    const seconds = (performance.now() - t0) / 1000
    const idleCpuMs = pids.reduce((a, pid) => a + cpuMs(pid), 0) - cpu0
    const pings = await pingsAnswered(clients) - pings0
    const idleRate = idleCpuMs / seconds
    const idleSysRate = (pids.reduce((a, pid) => a + sysMs(pid), 0) - sys0) / seconds
    const redisIdleRate = (cpuMs(redis.pid) - redis0) / seconds
    const held = Math.min(await serverClients(servers), (await states(clients)).open)
    add(samples, name, 'held', held)
    add(samples, name, 'dropped', connected.opened - held)
    add(samples, name, 'idleCpu', idleRate / (registered / 10_000))
    // the window holds a whole number of each process' sweeps, give or take one: per ping, the
    // cost does not depend on how many fell in it
    add(samples, name, 'pingsPerInterval', pings / registered / (seconds * 1000 / HEARTBEAT))
    add(samples, name, 'idleCpuPerPing', idleCpuMs * 1000 / Math.max(1, pings))
    add(samples, name, 'redisIdleCpu', redisIdleRate)

    // broadcasts to every client: from every process for raw ws (no cluster), from the first otherwise
    let serverCpu = 0
    let serverSys = 0
    let redisCpu = 0
    let deliveries = 0
    for (let seq = 0; seq < B; seq++) {
      const c0 = pids.reduce((a, pid) => a + cpuMs(pid), 0)
      const s0 = pids.reduce((a, pid) => a + sysMs(pid), 0)
      const r0 = cpuMs(redis.pid)
      const b0 = performance.now()
      const at = now()
      for (const s of name === 'ws' ? servers : servers.slice(0, 1)) s.send({ cmd: 'broadcast', seq })
      const seen = await untilSeen(clients, seq, held)
      const elapsed = (performance.now() - b0) / 1000
      serverCpu += pids.reduce((a, pid) => a + cpuMs(pid), 0) - c0 - idleRate * elapsed
      serverSys += pids.reduce((a, pid) => a + sysMs(pid), 0) - s0 - idleSysRate * elapsed
      // Redis' idle CPU (presence refreshes, ~1 ms/s) is under the 10 ms tick over one broadcast: kept in
      redisCpu += cpuMs(redis.pid) - r0
      deliveries += seen.count
      if (seen.count < held) notes.push(`${name}: broadcast ${seq} reached ${seen.count} of ${held} clients within ${SEEN_MS / 1000} s`)
      add(samples, name, 'broadcastMs', seen.last - at)
      await sleep(300)
    }
    add(samples, name, 'cpuPerDelivery', serverCpu * 1000 / deliveries)
    add(samples, name, 'userPerDelivery', (serverCpu - serverSys) * 1000 / deliveries)
    add(samples, name, 'sysPerDelivery', serverSys * 1000 / deliveries)
    add(samples, name, 'redisPerDelivery', redisCpu * 1000 / deliveries)
    add(samples, name, 'totalPerDelivery', (serverCpu + redisCpu) * 1000 / deliveries)
    log(`${name}: done`)
  } finally {
    await stopAll(clients, servers)
  }
}

interface RestartFigures {
  instance: number
  moved: number
  codes: Record<string, number>
  resumed: number
  failed: Record<string, number>
  refused: Record<string, number>
  errors: Record<string, number>
  attempts: number
  drainMs: number
  terminated: number
  portFreeMs: number
  settleMs: number
  lastClosedMs: number
  longestAwayMs: number
  missed: number
  /** Messages the clients still lacked when the next broadcast should have reached them all (not yet back, or behind). */
  behind: number
  duplicated: number
  /** Clients that got a message twice, so far. */
  clientsDuplicated: number
  peakSurvivorCpu: number
  peakRedisCpu: number
  /** Connection attempts dropped by a full listen queue over the restart (the kernel retries a dropped SYN after 1, 3, 7, 15 s). */
  overflows: number
  /** CPU of the new instance until every moved client was back, per moved client (µs); the client processes' CPU over that time (cores). */
  newCpuPerClient: number
  clientCpuShare: number
}

/** The restarts measured so far (written out by the budget's stop too). */
const figures: RestartFigures[] = []

/** The rolling restart: P plugin instances on a resume route, restarted one after another under a broadcast a second; each restart's figures go to `figures`. */
async function rollingRun (redis: RedisServer): Promise<void> {
  const name: ScaleContender = 'plugin+resume'
  const prefix = 'rolling'
  log(`rolling: starting ${P} instances and ${C} client processes`)
  const servers = (await Promise.all(Array.from({ length: P }, () => startServer(name, redis.url, prefix)))).map(s => s.server)
  const clients = await startClients()
  let seq = -1
  let ticker: NodeJS.Timeout | undefined
  let restarting = -1
  try {
    const ports = await Promise.all(servers.map(listen))
    const connected = await connectAll(clients, ports, 'resume')
    log(`rolling: ${connected.opened} of ${N} connected in ${(connected.ms / 1000).toFixed(1)} s`)
    await untilRegistered(servers, connected.opened)
    // a broadcast every second, from an instance that is not the one restarting
    // (pub/sub keeps the order of one publisher only: when the broadcaster changes, the next
    // broadcast waits until the last one of the previous broadcaster was published)
    let switching = false
    ticker = setInterval(() => {
      if (switching) return
      seq++
      servers[(restarting + 1) % P].send({ cmd: 'broadcast', seq })
    }, 1000)
    await sleep(3000)
    let before: Report = { missed: 0, behind: 0, duplicated: 0, clientsMissing: 0, clientsDuplicated: 0 }
    for (let i = 0; i < P; i++) {
      await Promise.all(clients.map(c => c.ask({ cmd: 'mark' })))
      // the new process first, everything but the port: it takes the port when the old one lets it go
      // (--surge: it listens on a port of its own at once, and the clients of the old one are sent there)
      const next = await startServer(name, redis.url, prefix, surge ? 0 : ports[i])
      const bound = listen(next.server)
      if (surge) {
        const to = await bound
        await Promise.all(clients.map(c => c.ask({ cmd: 'route', from: ports[i], to })))
        ports[i] = to
      }
      switching = true
      await servers[(restarting + 1) % P].ask({ cmd: 'sync' }, 30_000)
      restarting = i
      switching = false
      const old = servers[i]
      const t0 = performance.now()
      const at = now()
      const overflows0 = listenOverflows()
      const newCpu0 = cpuMs(next.server.pid)
      const clientCpu0 = clients.reduce((a, c) => a + cpuMs(c.pid), 0)
      const survivors = servers.filter((_, j) => j !== i).map(s => s.pid)
      let peak = 0
      let redisPeak = 0
      let last = survivors.map(cpuMs)
      let lastRedis = cpuMs(redis.pid)
      let lastAt = performance.now()
      const sampler = setInterval(() => {
        const nowCpu = survivors.map(cpuMs)
        const nowRedis = cpuMs(redis.pid)
        const dt = performance.now() - lastAt
        for (let j = 0; j < survivors.length; j++) peak = Math.max(peak, (nowCpu[j] - last[j]) / dt)
        redisPeak = Math.max(redisPeak, (nowRedis - lastRedis) / dt)
        last = nowCpu
        lastRedis = nowRedis
        lastAt = performance.now()
      }, 250)
      const closed = old.ask<{ closedMs: number, report?: { closedCount: number, terminatedCount: number } }>({ cmd: 'exit' }, Math.max(STOP_MS + 10_000, 45_000 + batchesMs(Math.ceil(N / P))))
      await bound
      const portFreeMs = performance.now() - t0
      servers[i] = next.server
      const { closedMs, report: drained } = await closed
      // every moved client back (a welcome, resumed or not), bounded
      let s = await states(clients)
      const end = Date.now() + SETTLE_MS
      while ((s.open < s.total || s.moved === 0 || s.resumed + total(s.failed) < s.moved) && Date.now() < end) {
        await sleep(100)
        s = await states(clients)
      }
      clearInterval(sampler)
      const newCpu = cpuMs(next.server.pid) - newCpu0
      const clientCpu = clients.reduce((a, c) => a + cpuMs(c.pid), 0) - clientCpu0
      // the next broadcast has reached everyone: what is missing now is missing
      const target = seq + 1
      await untilSeen(clients, target, s.total, Math.max(10_000, N / 10))
      const reports = await Promise.all(clients.map(c => c.ask<Report>({ cmd: 'report', finalSeq: target })))
      const after = reports.reduce((a, r) => ({ missed: a.missed + r.missed, behind: a.behind + r.behind, duplicated: a.duplicated + r.duplicated, clientsMissing: a.clientsMissing + r.clientsMissing, clientsDuplicated: a.clientsDuplicated + r.clientsDuplicated }))
      const f: RestartFigures = {
        instance: i,
        moved: s.moved,
        codes: s.codes,
        resumed: s.resumed,
        failed: s.failed,
        refused: s.refused,
        errors: s.errors,
        attempts: s.attempts,
        drainMs: closedMs,
        terminated: drained?.terminatedCount ?? NaN,
        portFreeMs,
        settleMs: s.lastBackAt - at,
        lastClosedMs: s.lastAwayAt - at,
        longestAwayMs: s.longestAway,
        missed: after.missed - before.missed,
        behind: after.behind,
        duplicated: after.duplicated - before.duplicated,
        clientsDuplicated: after.clientsDuplicated,
        peakSurvivorCpu: peak * 100,
        peakRedisCpu: redisPeak * 100,
        overflows: listenOverflows() - overflows0,
        newCpuPerClient: newCpu * 1000 / Math.max(1, s.moved),
        clientCpuShare: clientCpu / Math.max(1, s.lastBackAt - at)
      }
      before = after
      figures.push(f)
      log(`rolling: instance ${i}: ${f.moved} moved (close codes ${describe(f.codes)}), ${f.resumed} resumed, failed ${describe(f.failed)}, refused ${describe(f.refused)}, errors ${describe(f.errors)}, settled in ${(f.settleMs / 1000).toFixed(2)} s (last one closed at ${(f.lastClosedMs / 1000).toFixed(2)} s, longest away ${(f.longestAwayMs / 1000).toFixed(2)} s), drain ${fmt(f.drainMs)} ms (${f.terminated} terminated), missed ${f.missed}, behind ${f.behind}, duplicated ${f.duplicated} (${fmt(f.clientsDuplicated)} clients so far), peak survivor CPU ${f.peakSurvivorCpu.toFixed(0)} %, listen queue overflows ${fmt(f.overflows)}, new instance CPU ${fmt(f.newCpuPerClient)} µs per moved client, client processes ${f.clientCpuShare.toFixed(2)} cores`)
      await sleep(3000)
    }
  } finally {
    clearInterval(ticker)
    await stopAll(clients, servers)
  }
}

function version (pkg: string): string {
  const path = fileURLToPath(new URL(`../../node_modules/${pkg}/package.json`, import.meta.url))
  return (JSON.parse(readFileSync(path, 'utf8')) as { version: string }).version
}

function fmt (value: number, digits = 0): string {
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

const packages = ['ws', 'fastify', 'socket.io', '@socket.io/redis-adapter', 'ioredis']
const machine = () => [
  `- ${cpus().length} cores (nproc), ${cpus()[0]?.model ?? 'unknown CPU'}; load average at the start ${loadAtStart}`,
  `- Node ${process.version}, ${packages.map(p => `${p} ${version(p)}`).join(', ')}`,
  `- \`npm run bench:scale${process.argv.slice(2).length > 0 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}\`: ${fmt(N)} connections, ${P} server processes, ${C} client processes, heartbeat ${HEARTBEAT} ms, ${new Date().toISOString()}, ${((performance.now() - started) / 1000).toFixed(0)} s`
].join('\n')
const loadAtStart = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')

/**
 * The rolling restart's tables, of the restarts measured so far: all of them, or those done when
 * the budget stopped the run (`stopped` says so in the heading).
 */
function rollingResults (stopped = false): { output: string, json: unknown } {
  const rows = figures.map(f => `| ${f.instance + 1} | ${fmt(f.moved)} (${describe(f.codes)}) | ${fmt(f.resumed)} | ${describe(f.failed)} | ${describe(f.refused)} | ${describe(f.errors)} | ${fmt(f.attempts)} | ${fmt(f.drainMs)} (${f.terminated}) | ${fmt(f.portFreeMs)} | ${fmt(f.lastClosedMs)} | ${fmt(f.settleMs)} | ${fmt(f.longestAwayMs)} | ${f.missed} | ${f.behind} | ${f.duplicated} | ${fmt(f.peakSurvivorCpu)} | ${fmt(f.peakRedisCpu)} | ${fmt(f.overflows)} | ${fmt(f.newCpuPerClient)} | ${f.clientCpuShare.toFixed(2)} |`)
  const output = [
    `## Rolling restart${surge ? ' with a surge instance (new port, clients sent there)' : ' on the same ports'}: ${P} plugin instances, ${fmt(N)} resume-protocol clients, a broadcast every second, replay log ${replay === undefined ? 'of the defaults (1000 messages, 1 MiB)' : `of ${fmt(replay.messages)} messages, ${fmt(replay.bytes / 1048576, 1)} MiB`} per instance, shutdown batches ${batch === undefined ? 'of the defaults' : batch.replace('/', ' every ') + ' ms'}, listen backlog ${backlog ?? 'of the default (511)'}`,
    '',
    ...(stopped ? [`**Stopped by the budget of ${budget} s after ${figures.length} of ${P} restarts.**`, ''] : []),
    '| restart | clients moved (close codes) | resumed | fresh sessions | HTTP refusals | TCP errors | reconnect attempts | drain (ms; terminated) | port free (ms) | last closed (ms) | all back (ms) | longest away (ms) | missed | behind | duplicated | peak CPU of a survivor (% of a core) | peak Redis CPU (%) | listen queue overflows | new instance CPU per moved client (µs) | CPU of the client processes (cores) |',
    '| ---: | ---: | ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows,
    '',
    machine(),
    ''
  ].join('\n')
  const json = { N, P, C, heartbeat: HEARTBEAT, surge, replay: replay ?? 'default', batch: batch ?? 'default', backlog: backlog ?? 'default', stopped, figures }
  return { output, json }
}

/** Writes a result's tables to test/bench/results/. */
function writeResults (output: string, json: unknown): void {
  process.stdout.write(`\n${output}`)
  mkdirSync(resultsDir, { recursive: true })
  const file = rolling ? `rolling${surge ? '-surge' : ''}${replay === undefined ? '-default-log' : ''}-results` : 'scale-results'
  writeFileSync(`${resultsDir}${file}.md`, output)
  writeFileSync(`${resultsDir}${file}.json`, JSON.stringify(json, null, 2))
  process.stdout.write(`\nwritten to test/bench/results/${file}.md and .json\n`)
}

const redis = await new RedisServer().start()
redisPid = redis.pid
let output: string
let json: unknown
try {
  if (rolling) {
    await rollingRun(redis)
    ;({ output, json } = rollingResults())
  } else {
    const contenders = (['ws', 'plugin+redis', 'socket.io+redis'] as const).filter(n => only === undefined || only.includes(n))
    for (const name of contenders) await scaleRun(name, redis, 1)
    const I = fmt(N)
    const metrics: Metric[] = [
      { key: 'held', label: `connections held after ${2 * 3 * HEARTBEAT / 1000} s idle (two heartbeat timeouts)`, unit: 'connections', digits: 0 },
      { key: 'dropped', label: 'connections dropped through it', unit: 'connections', digits: 0 },
      { key: 'connectRate', label: `connection setup, ${I} clients, ${CONCURRENCY} at a time`, unit: 'connections/s', digits: 0 },
      { key: 'rssPerConn', label: 'RSS per connection, all server processes', unit: 'bytes', digits: 0 },
      { key: 'heapPerConn', label: 'heap per connection, all server processes', unit: 'bytes', digits: 0 },
      { key: 'idleCpu', label: `idle CPU per 10,000 connections, heartbeat every ${HEARTBEAT} ms, servers`, unit: 'ms CPU/s', digits: 1 },
      { key: 'pingsPerInterval', label: 'heartbeat pings a connection answered per interval in that window', unit: 'pings', digits: 2 },
      { key: 'idleCpuPerPing', label: 'idle CPU of the servers per ping answered', unit: 'µs', digits: 2 },
      { key: 'redisIdleCpu', label: 'idle CPU of redis-server', unit: 'ms CPU/s', digits: 1 },
      { key: 'broadcastMs', label: `a broadcast to all: until the last of ${I} clients has it, median of ${B}`, unit: 'ms', digits: 0 },
      { key: 'cpuPerDelivery', label: 'CPU per delivery, servers (idle CPU subtracted)', unit: 'µs', digits: 2 },
      { key: 'userPerDelivery', label: 'of it in the process (user time)', unit: 'µs', digits: 2 },
      { key: 'sysPerDelivery', label: 'of it in the kernel (system time: the write, and loopback TCP)', unit: 'µs', digits: 2 },
      { key: 'redisPerDelivery', label: 'CPU per delivery, redis-server (its idle CPU included)', unit: 'µs', digits: 3 },
      { key: 'totalPerDelivery', label: 'CPU per delivery, servers and redis-server', unit: 'µs', digits: 2 }
    ]
    output = [
      `## ${fmt(N)} connections on ${P} server processes (ratios to raw ws, and to Socket.IO + redis-adapter)`,
      '',
      table(samples, contenders, metrics, 'ws', contenders.includes('socket.io+redis') ? 'socket.io+redis' : undefined),
      '',
      ...notes.map(n => `- ${n}`),
      machine(),
      ''
    ].join('\n')
    json = { N, P, C, heartbeat: HEARTBEAT, broadcasts: B, medians: medians(samples), notes }
  }
} finally {
  redisPid = undefined
  await redis.stop()
}
writeResults(output, json)
process.exit(0)
