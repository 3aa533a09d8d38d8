import { mkdirSync, writeFileSync } from 'node:fs'
import { loadavg, cpus } from 'node:os'
import { fileURLToPath } from 'node:url'
import { build } from './build.ts'
import { Child } from './child.ts'
import type { GroupStats, PresenceClientCommand } from './presence-clients.ts'
import type { PresenceServerAnswer, PresenceServerCommand, PresenceServerReady } from './presence-server.ts'
import { RedisServer } from '../redis-server.ts'

/*
 * `npm run bench:presence` (issue 15): what room presence costs. A server in a process of its
 * own (presence-server.ts), its clients in another (presence-clients.ts). A room of M members
 * (1,000 and 10,000) is filled in one turn; then one more member joins it (wsManager.join of a
 * connection already open: the upgrade is not counted), and leaves it, `reps` times. For each:
 * the server's CPU time (user + system) from the command to every member having its frame,
 * less what the IPC round alone costs; the frames each member got and their bytes; the time
 * from the join to the last member's frame. With the cap on (the default, 1000 users) and off
 * (maxMembers above M); then a burst of 20 joins in one turn (still one frame per member), and
 * a room broadcast of the diff's size for scale (the cost of the writes alone). Last, two
 * instances on one private redis-server: a join on one, the diff at its members on the other.
 *
 * Options: --reps=N (default 20), --quick (1,000 members only), --no-uncapped-10k (skip the
 * room of 10,000 without the cap: its filling sends each member the map of everyone, ~5 GB in
 * all). Writes test/bench/results/presence-results.{md,json}. Needs redis-server for the last part.
 */

const argv = process.argv.slice(2)
const arg = (name: string, def: number): number => Number(argv.find(a => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? def)
const REPS = arg('reps', 20)
const QUICK = argv.includes('--quick')
const UNCAPPED_10K = !argv.includes('--no-uncapped-10k') && !QUICK
const BURST = 20
const FILL_TIMEOUT = 240_000
const CAP_OFF = 1_000_000
/** The joiners' metadata (the members' is empty, to keep the room's first states small). */
const NAME = 'Ada Lovelace'

const childDir = `${build()}/test/bench/`
const children = new Set<Child<never>>()

function spawnChild<T> (script: string, args: string[], server: boolean): Child<T> {
  const child = new Child<T>(childDir, script, args, server)
  children.add(child as Child<never>)
  child.exited.then(() => children.delete(child as Child<never>), () => {})
  return child
}

// whatever happens, no child outlives the run
const killAll = (): void => { for (const child of children) child.kill() }
process.on('exit', killAll)
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => { killAll(); process.exit(130) })
// a hard bound on the whole run
setTimeout(() => {
  process.stderr.write('bench:presence: over 15 minutes, stopping\n')
  killAll()
  process.exit(1)
}, 15 * 60_000).unref()

type Server = Child<PresenceServerCommand>
type Clients = Child<PresenceClientCommand>

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

async function startServer (maxMembers: number, redis?: { url: string, prefix: string }): Promise<{ server: Server, ready: PresenceServerReady }> {
  const server = spawnChild<PresenceServerCommand>('presence-server.ts', [String(maxMembers), ...(redis === undefined ? [] : [redis.url, redis.prefix])], true)
  return { server, ready: await server.next<PresenceServerReady>() }
}

async function startClients (): Promise<Clients> {
  const clients = spawnChild<PresenceClientCommand>('presence-clients.ts', [], false)
  await clients.next()
  return clients
}

async function open (clients: Clients, port: number, prefix: string, count: number, name?: string): Promise<void> {
  const answer = await clients.ask<{ opened?: number, error?: string }>({ cmd: 'open', port, prefix, count, name }, FILL_TIMEOUT)
  if (answer.error !== undefined) throw new Error(answer.error)
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}
const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length
const p = (xs: number[], q: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))]

/** µs of CPU an IPC round costs the server alone (subtracted from every figure). */
async function ipcCost (server: Server): Promise<number> {
  const costs: number[] = []
  for (let i = 0; i < 9; i++) {
    const a = await server.ask<PresenceServerAnswer>({ cmd: 'cpu' })
    const b = await server.ask<PresenceServerAnswer>({ cmd: 'cpu' })
    costs.push(b.cpu - a.cpu)
  }
  return median(costs)
}

interface Sample {
  /** ms of server CPU */
  cpu: number
  /** ms from the command to the last member's frame */
  wall: number
  members: GroupStats
  newcomers: GroupStats
}

/** One change: `command` to `server`, then waits for `members` members (and `newcomers` joiners) to have their frame. */
async function change (server: Server, clients: Clients, command: PresenceServerCommand, members: number, newcomers: number, ipc: number, memberGroup = 'm'): Promise<Sample> {
  await clients.ask({ cmd: 'mark' })
  const before = await server.ask<PresenceServerAnswer>(command)
  await clients.ask({ cmd: 'wait', group: memberGroup, members }, FILL_TIMEOUT)
  if (newcomers > 0) await clients.ask({ cmd: 'wait', group: 'j', members: newcomers }, FILL_TIMEOUT)
  const after = await server.ask<PresenceServerAnswer>({ cmd: 'cpu' })
  // anything more than one frame each would come now
  await sleep(30)
  const stats = await clients.ask<GroupStats>({ cmd: 'stats', group: memberGroup })
  const joiners = await clients.ask<GroupStats>({ cmd: 'stats', group: 'j' })
  return { cpu: (after.cpu - before.cpu - ipc) / 1000, wall: (stats.last - before.at) / 1e6, members: stats, newcomers: joiners }
}

interface Row {
  scenario: string
  members: number
  maxMembers: number
  op: string
  samples: number
  cpuMedianMs: number
  cpuMeanMs: number
  cpuMinMs: number
  wallMedianMs: number
  framesPerMember: number
  mostPerMember: number
  bytesPerMemberFrame: number
  memberFrame: string
  newcomerBytes: number
  newcomerFrame: string
}

const rows: Row[] = []
const notes: string[] = []

function say (text: string): void {
  process.stdout.write(text + '\n')
}

function summarize (scenario: string, members: number, maxMembers: number, op: string, samples: Sample[]): Row {
  const last = samples[samples.length - 1]
  const frames = samples.map(s => s.members.frames / members)
  const row: Row = {
    scenario,
    members,
    maxMembers,
    op,
    samples: samples.length,
    cpuMedianMs: median(samples.map(s => s.cpu)),
    cpuMeanMs: mean(samples.map(s => s.cpu)),
    cpuMinMs: Math.min(...samples.map(s => s.cpu)),
    wallMedianMs: median(samples.map(s => s.wall)),
    framesPerMember: Math.max(...frames),
    mostPerMember: Math.max(...samples.map(s => s.members.mostPerMember)),
    bytesPerMemberFrame: last.members.frames === 0 ? 0 : last.members.bytes / last.members.frames,
    memberFrame: last.members.sample.slice(0, 200),
    newcomerBytes: last.newcomers.bytes,
    newcomerFrame: last.newcomers.sample.slice(0, 120)
  }
  rows.push(row)
  say(`  ${op}: CPU median ${row.cpuMedianMs.toFixed(2)} ms (mean ${row.cpuMeanMs.toFixed(2)}, min ${row.cpuMinMs.toFixed(2)}), last member after ${row.wallMedianMs.toFixed(1)} ms; ` +
    `${row.framesPerMember} frame(s) per member (most ${row.mostPerMember}), ${row.bytesPerMemberFrame.toFixed(0)} B each; newcomers got ${row.newcomerBytes} B`)
  return row
}

/** A room of `members` on one server; one joiner in and out `reps` times, a burst of 20, a broadcast for scale. */
async function room (members: number, maxMembers: number, reps: number): Promise<void> {
  const scenario = `${members} members, ${maxMembers >= CAP_OFF ? 'cap off' : `cap ${maxMembers}`}`
  say(`\n${scenario}`)
  const { server, ready } = await startServer(maxMembers)
  const clients = await startClients()
  try {
    await open(clients, ready.port, 'm', members)
    await open(clients, ready.port, 'j', BURST + 1, NAME)
    const filling = Date.now()
    await clients.ask({ cmd: 'mark' })
    server.send({ cmd: 'joinAll', prefix: 'm' })
    await server.next()
    await clients.ask({ cmd: 'wait', group: 'm', members }, FILL_TIMEOUT)
    const filled = await clients.ask<GroupStats>({ cmd: 'stats', group: 'm' })
    say(`  filled in ${Date.now() - filling} ms: each member got its state, ${(filled.bytes / filled.frames).toFixed(0)} B`)
    await sleep(200)
    const ipc = await ipcCost(server)
    say(`  an IPC round alone: ${(ipc / 1000).toFixed(3)} ms of server CPU (subtracted)`)
    // one round unmeasured: the first of each kind warms the code up
    await change(server, clients, { cmd: 'join', ids: ['j0'] }, members, 1, ipc)
    await change(server, clients, { cmd: 'leave', ids: ['j0'] }, members, 0, ipc)
    const joins: Sample[] = []
    const leaves: Sample[] = []
    for (let i = 0; i < reps; i++) {
      joins.push(await change(server, clients, { cmd: 'join', ids: ['j0'] }, members, 1, ipc))
      leaves.push(await change(server, clients, { cmd: 'leave', ids: ['j0'] }, members, 0, ipc))
    }
    summarize(scenario, members, maxMembers, 'join of one more member', joins)
    summarize(scenario, members, maxMembers, 'leave of it', leaves)
    const burst = Array.from({ length: BURST }, (_, i) => `j${i + 1}`)
    const burstJoins: Sample[] = []
    const burstLeaves: Sample[] = []
    for (let i = 0; i < Math.max(3, Math.floor(reps / 4)); i++) {
      burstJoins.push(await change(server, clients, { cmd: 'join', ids: burst }, members, BURST, ipc))
      burstLeaves.push(await change(server, clients, { cmd: 'leave', ids: burst }, members, 0, ipc))
    }
    summarize(scenario, members, maxMembers, `burst: ${BURST} joins in one turn`, burstJoins)
    summarize(scenario, members, maxMembers, `burst: their ${BURST} leaves in one turn`, burstLeaves)
    // for scale: one frame of the diff's size written to every member, by a room broadcast
    const diff = joins[joins.length - 1].members
    const data = 'x'.repeat(Math.max(1, Math.round(diff.bytes / Math.max(1, diff.frames)) - 2))
    const broadcasts: number[] = []
    for (let i = 0; i < reps; i++) {
      broadcasts.push((await server.ask<PresenceServerAnswer>({ cmd: 'broadcast', data })).cpu / 1000)
      await sleep(20)
    }
    const b = median(broadcasts)
    rows.push({ scenario, members, maxMembers, op: 'for scale: a room broadcast of the same size', samples: reps, cpuMedianMs: b, cpuMeanMs: mean(broadcasts), cpuMinMs: Math.min(...broadcasts), wallMedianMs: 0, framesPerMember: 1, mostPerMember: 1, bytesPerMemberFrame: data.length + 2, memberFrame: '', newcomerBytes: 0, newcomerFrame: '' })
    say(`  for scale, a room broadcast of ${data.length + 2} B to the ${members} members (no IPC in it): CPU median ${b.toFixed(2)} ms`)
  } finally {
    await clients.stop({ cmd: 'exit' })
    await server.stop({ cmd: 'exit' })
  }
}

interface Latency { op: string, samples: number, firstMedianMs: number, firstP90Ms: number, lastMedianMs: number, lastP90Ms: number, framesPerMember: number, bytesPerMemberFrame: number }
const latencies: Latency[] = []

/** Two instances on one redis-server: joins on A, the diff at B's members. */
async function cluster (members: number, reps: number): Promise<void> {
  say(`\n2 instances on one redis-server, ${members} members on B, the joiner on A, cap off`)
  const redis = await new RedisServer().start()
  try {
    const redisOpts = { url: redis.url, prefix: 'benchpresence' }
    const a = await startServer(CAP_OFF, redisOpts)
    const b = await startServer(CAP_OFF, redisOpts)
    const clients = await startClients()
    try {
      await open(clients, b.ready.port, 'm', members)
      await open(clients, a.ready.port, 'j', BURST + 1, NAME)
      await clients.ask({ cmd: 'mark' })
      b.server.send({ cmd: 'joinAll', prefix: 'm' })
      await b.server.next()
      await clients.ask({ cmd: 'wait', group: 'm', members }, FILL_TIMEOUT)
      await sleep(500)
      // warm up
      const ipc = 0
      await change(a.server, clients, { cmd: 'join', ids: ['j0'] }, members, 1, ipc)
      await change(a.server, clients, { cmd: 'leave', ids: ['j0'] }, members, 0, ipc)
      for (const [op, ids] of [['a join on A', ['j0']], [`a burst of ${BURST} joins on A`, Array.from({ length: BURST }, (_, i) => `j${i + 1}`)]] as const) {
        const joins: Sample[] = []
        const leaves: Sample[] = []
        for (let i = 0; i < reps; i++) {
          joins.push(await change(a.server, clients, { cmd: 'join', ids: [...ids] }, members, ids.length, ipc))
          leaves.push(await change(a.server, clients, { cmd: 'leave', ids: [...ids] }, members, 0, ipc))
        }
        for (const [name, samples] of [[op, joins], [`its leave${ids.length > 1 ? 's' : ''}`, leaves]] as const) {
          // `wall` is to the last member; the first is stats.first
          const firsts = samples.map(s => s.wall - (s.members.last - s.members.first) / 1e6)
          const lasts = samples.map(s => s.wall)
          const last = samples[samples.length - 1].members
          const row: Latency = {
            op: name,
            samples: samples.length,
            firstMedianMs: median(firsts),
            firstP90Ms: p(firsts, 0.9),
            lastMedianMs: median(lasts),
            lastP90Ms: p(lasts, 0.9),
            framesPerMember: Math.max(...samples.map(s => s.members.frames / members)),
            bytesPerMemberFrame: last.bytes / last.frames
          }
          latencies.push(row)
          say(`  ${name}: to B's first member median ${row.firstMedianMs.toFixed(2)} ms (p90 ${row.firstP90Ms.toFixed(2)}), to its last (${members}th) ${row.lastMedianMs.toFixed(2)} ms (p90 ${row.lastP90Ms.toFixed(2)}); ${row.framesPerMember} frame(s) per member, ${row.bytesPerMemberFrame.toFixed(0)} B`)
        }
      }
    } finally {
      await clients.stop({ cmd: 'exit' })
      await a.server.stop({ cmd: 'exit' })
      await b.server.stop({ cmd: 'exit' })
    }
  } finally {
    await redis.stop()
  }
}

const started = new Date()
const loadBefore = loadavg()
say(`bench:presence, Node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? '?'}, load average ${loadBefore.map(l => l.toFixed(2)).join(' ')}, ${REPS} reps`)
/** A part that fails (a timeout, redis-server missing) is noted, and the others still run and are written. */
async function part (name: string, run: () => Promise<void>): Promise<void> {
  try {
    await run()
  } catch (err) {
    const note = `${name}: not measured (${(err as Error).message})`
    notes.push(note)
    say(`  ${note}`)
    killAll()
  }
}

await part('1,000 members, cap off', async () => await room(1000, CAP_OFF, REPS))
await part('1,000 members, cap 1000', async () => await room(1000, 1000, REPS))
await part('1,000 members, cap 500', async () => await room(1000, 500, REPS))
if (!QUICK) {
  await part('10,000 members, cap 1000', async () => await room(10_000, 1000, Math.max(5, Math.floor(REPS / 2))))
  if (UNCAPPED_10K) await part('10,000 members, cap off', async () => await room(10_000, CAP_OFF, Math.max(5, Math.floor(REPS / 2))))
}
await part('two instances', async () => await cluster(1000, REPS))
const loadAfter = loadavg()
say(`\nload average at the end: ${loadAfter.map(l => l.toFixed(2)).join(' ')}`)

const results = { date: started.toISOString(), node: process.version, cpus: `${cpus().length} × ${cpus()[0]?.model ?? '?'}`, loadBefore, loadAfter, reps: REPS, rows, latencies, notes }
const dir = fileURLToPath(new URL('./results/', import.meta.url))
mkdirSync(dir, { recursive: true })
writeFileSync(`${dir}presence-results.json`, JSON.stringify(results, null, 2) + '\n')

const f = (n: number, d = 2): string => n.toFixed(d)
const md = [
  '# bench:presence results',
  '',
  `${started.toISOString()}, Node ${process.version}, ${results.cpus}; load average (1, 5, 15 min) ${loadBefore.map(l => f(l)).join(', ')} at the start, ${loadAfter.map(l => f(l)).join(', ')} at the end; ${REPS} reps (half at 10,000 members).`,
  '',
  'Server CPU: user + system of the server process, from the command to every member having its frame, less an IPC round. Wall: from the command to the last member\'s frame.',
  '',
  '| room | change | server CPU, median (mean, min) ms | wall to the last member, median ms | frames per member | bytes per member frame | the newcomers\' state, bytes |',
  '|---|---|---|---|---|---|---|',
  ...rows.map(r => `| ${r.scenario} | ${r.op} | ${f(r.cpuMedianMs)} (${f(r.cpuMeanMs)}, ${f(r.cpuMinMs)}) | ${r.wallMedianMs === 0 ? '' : f(r.wallMedianMs, 1)} | ${r.framesPerMember} | ${f(r.bytesPerMemberFrame, 0)} | ${r.newcomerBytes === 0 ? '' : r.newcomerBytes} |`),
  '',
  '## Two instances on one redis-server (1,000 members on B, the joiners on A, cap off)',
  '',
  '| change on A | to B\'s first member, median (p90) ms | to B\'s last member, median (p90) ms | frames per member | bytes per frame |',
  '|---|---|---|---|---|',
  ...latencies.map(l => `| ${l.op} | ${f(l.firstMedianMs)} (${f(l.firstP90Ms)}) | ${f(l.lastMedianMs)} (${f(l.lastP90Ms)}) | ${l.framesPerMember} | ${f(l.bytesPerMemberFrame, 0)} |`),
  '',
  '## Frames members get (samples)',
  '',
  ...rows.filter(r => r.memberFrame !== '').map(r => `- ${r.scenario}, ${r.op}: \`${r.memberFrame}\``),
  ...(notes.length === 0 ? [] : ['## Not measured', '', ...notes.map(n => `- ${n}`), '']),
  ''
]
writeFileSync(`${dir}presence-results.md`, md.join('\n'))
say(`\nwritten: ${dir}presence-results.{md,json}`)
