import { fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import WebSocket from 'ws'

/*
 * `npm run bench:dashboard` (issue 16): what open dashboards cost the server. 10,000
 * connections (100 rooms, 2,000 users) to a server in its own process; its CPU time (user +
 * system) is measured over WINDOW seconds with no dashboard open (the plot's point a second
 * only), one, ten showing the first page of the table, and ten each searching something else
 * (ten passes over the connections a tick). Printed as ms of CPU per second: ‰ of one core.
 *
 * `npm run bench:dashboard -- --table`: the table at TOTAL (100,000) connections, CONNECTIONS
 * of them real ones here and the rest another instance's, from the adapter's presence (one
 * process cannot hold 100,000 sockets). A dashboard asks for pages and searches, ROUNDS
 * times each; the time from the query sent to its page received (median, p99) and the page's
 * size are printed.
 */

const TABLE = process.argv.includes('--table')
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 10_000)
const TOTAL = Number(process.env.TOTAL ?? 100_000)
const ROUNDS = Number(process.env.ROUNDS ?? 50)
const WINDOW = Number(process.env.WINDOW ?? 10)
const loader = fileURLToPath(new URL('../../node_modules/@tapjs/typescript/dist/esm/import.mjs', import.meta.url))
const child = fork(fileURLToPath(new URL('./dashboard-server.ts', import.meta.url)), [], {
  execArgv: [`--import=${loader}`],
  env: { ...process.env, REMOTE: TABLE ? String(TOTAL - CONNECTIONS) : '0' }
})

function next<T> (key: string): Promise<T> {
  return new Promise(resolve => {
    const listener = (m: Record<string, unknown>): void => {
      if (!(key in m)) return
      child.off('message', listener)
      resolve(m[key] as T)
    }
    child.on('message', listener)
  })
}

async function cpu (): Promise<number> {
  const answer = next<NodeJS.CpuUsage>('cpu')
  child.send({ cmd: 'cpu' })
  const { user, system } = await answer
  return (user + system) / 1000
}

const port = await next<number>('port')
const base = `127.0.0.1:${port}`
const sockets: WebSocket[] = []
for (let i = 0; i < CONNECTIONS; i += 500) {
  await Promise.all(Array.from({ length: Math.min(500, CONNECTIONS - i) }, async (_, j) => {
    const ws = new WebSocket(`ws://${base}/ws?user=u${(i + j) % 2000}&room=r${(i + j) % 100}`)
    sockets.push(ws)
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
  }))
}

async function dashboard (search?: string): Promise<WebSocket> {
  const { ticket } = await (await fetch(`http://${base}/ws-admin/ticket`)).json() as { ticket: string }
  const ws = new WebSocket(`ws://${base}/ws-admin/live`, ['wss-dashboard', `ticket.${ticket}`])
  await new Promise(resolve => ws.once('open', resolve))
  if (search !== undefined) ws.send(JSON.stringify({ type: 'query', search, field: 'any' }))
  return ws
}

async function measure (name: string, open: () => Promise<WebSocket[]>): Promise<void> {
  const dashboards = await open()
  let frames = 0
  for (const d of dashboards) d.on('message', () => { frames++ })
  await new Promise(resolve => setTimeout(resolve, 1500))
  const before = await cpu()
  const started = Date.now()
  await new Promise(resolve => setTimeout(resolve, WINDOW * 1000))
  const used = await cpu() - before
  const seconds = (Date.now() - started) / 1000
  process.stdout.write(`| ${name} | ${(used / seconds).toFixed(1)} | ${frames} |\n`)
  for (const d of dashboards) d.close()
  await new Promise(resolve => setTimeout(resolve, 500))
}

/** The table's queries at TOTAL connections: each ROUNDS times, the round trip and the page's bytes. */
async function table (): Promise<void> {
  const ws = await dashboard()
  const pages: Array<(page: string) => void> = []
  ws.on('message', (data: Buffer) => {
    const text = data.toString()
    if (text.startsWith('{"type":"table"')) pages.shift()?.(text)
  })
  const ask = async (q: Record<string, unknown>): Promise<string> => {
    const page = new Promise<string>(resolve => pages.push(resolve))
    ws.send(JSON.stringify({ type: 'query', ...q }))
    return await page
  }
  // the other instance's connections come with a later tick
  for (;;) {
    const page = JSON.parse(await ask({})) as { total: number }
    if (page.total === TOTAL) break
    await new Promise(resolve => setTimeout(resolve, 200))
  }
  process.stdout.write(`${TOTAL} connections in the table: ${CONNECTIONS} here, ${TOTAL - CONNECTIONS} on another instance (its presence); ${ROUNDS} queries each, Node ${process.version}\n\n| query | matches | median ms | p99 ms | page bytes |\n|---|---|---|---|---|\n`)
  const queries: Array<[string, Record<string, unknown>]> = [
    ['first page (25 rows)', {}],
    ['a page in the middle (offset 50,000, 100 rows)', { offset: 50_000, limit: 100 }],
    ['the last page', { offset: TOTAL - 25 }],
    ['search "u123" in any field', { search: 'u123' }],
    ['userId u42 (exact: the index here)', { search: 'u42', field: 'userId' }],
    ['room r7 (exact: the index here)', { search: 'r7', field: 'room' }],
    ['a clientId of the other instance', { search: `x${TOTAL - CONNECTIONS - 1}`, field: 'clientId' }],
    ['a search that matches nothing', { search: 'nobody' }]
  ]
  for (const [name, q] of queries) {
    const times: number[] = []
    let last = ''
    for (let i = 0; i < ROUNDS; i++) {
      const started = performance.now()
      last = await ask(q)
      times.push(performance.now() - started)
    }
    times.sort((a, b) => a - b)
    const at = (p: number): string => times[Math.min(times.length - 1, Math.ceil(p * times.length) - 1)].toFixed(1)
    const page = JSON.parse(last) as { total: number }
    process.stdout.write(`| ${name} | ${page.total} | ${at(0.5)} | ${at(0.99)} | ${Buffer.byteLength(last)} |\n`)
  }
  ws.close()
}

if (TABLE) {
  await table()
  for (const ws of sockets) ws.terminate()
  child.send({ cmd: 'exit' })
  process.exit(0)
}
process.stdout.write(`${CONNECTIONS} connections, ${WINDOW} s each, Node ${process.version}\n\n| dashboards | server CPU, ms per second | frames received |\n|---|---|---|\n`)
await measure('none (the plot\'s point only)', async () => [])
await measure('1', async () => [await dashboard()])
await measure('10, the same first page', async () => await Promise.all(Array.from({ length: 10 }, async () => await dashboard())))
await measure('10, each searching (u12, u13…)', async () => await Promise.all(Array.from({ length: 10 }, async (_, i) => await dashboard(`u1${i + 2}`))))
for (const ws of sockets) ws.terminate()
child.send({ cmd: 'exit' })
