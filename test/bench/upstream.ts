import { fork } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, writeFileSync } from 'node:fs'
import WebSocket from 'ws'
import type { UpstreamCommand } from './upstream-server.ts'

/*
 * `npm run bench -- --part=upstream` (issue 14): what numbering and acknowledging the
 * client's messages (protocol 2) costs the server. One client sends 10,000 messages of
 * 128 bytes to a resume-protocol route, once as protocol 1 and once with `v=2`, alternately,
 * `pairs` times per run; the server's CPU time (user + system, its own process) per message
 * is measured for each, and the ratio of the medians reported.
 */

const MESSAGES = 10_000
const PAYLOAD = JSON.stringify({ type: 'chat', text: 'x'.repeat(128 - JSON.stringify({ type: 'chat', text: '' }).length) })

class Server {
  readonly child: ReturnType<typeof fork>

  constructor (script: string) {
    this.child = fork(script, [], { execArgv: [] })
  }

  /** The next message that has `key`. */
  async next<T> (key: string): Promise<T> {
    return await new Promise(resolve => {
      const listener = (m: Record<string, unknown>): void => {
        if (!(key in m)) return
        this.child.off('message', listener)
        resolve(m[key] as T)
      }
      this.child.on('message', listener)
    })
  }

  async cpu (): Promise<NodeJS.CpuUsage> {
    const answer = this.next<NodeJS.CpuUsage>('cpu')
    this.child.send({ cmd: 'cpu' } satisfies UpstreamCommand)
    return await answer
  }
}

/** Sends MESSAGES frames on one connection; the server's CPU µs per message. */
async function measure (server: Server, port: number, numbered: boolean): Promise<number> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws${numbered ? '?v=2' : ''}`)
  await once(ws, 'message') // the welcome
  const done = server.next<number>('done')
  server.child.send({ cmd: 'expect', count: MESSAGES } satisfies UpstreamCommand)
  const before = await server.cpu()
  for (let i = 0; i < MESSAGES; i++) {
    ws.send(PAYLOAD)
    // keep the socket's buffer small, as a browser's would be
    if (ws.bufferedAmount > 256 * 1024) await new Promise(resolve => setImmediate(resolve))
  }
  await done
  const after = await server.cpu()
  ws.close()
  await once(ws, 'close')
  return (after.user - before.user + after.system - before.system) / MESSAGES
}

function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

export async function upstreamPart (childDir: string, resultsDir: string, runs: number, pairs: number): Promise<void> {
  const plain: number[] = []
  const numbered: number[] = []
  for (let run = 1; run <= runs; run++) {
    const server = new Server(`${childDir}upstream-server.js`)
    const port = await server.next<number>('port')
    // warm up both paths first (JIT), then alternate, so that drift spreads over both
    await measure(server, port, false)
    await measure(server, port, true)
    for (let i = 0; i < pairs; i++) {
      const first = i % 2 === 0
      const a = await measure(server, port, first)
      const b = await measure(server, port, !first)
      plain.push(first ? b : a)
      numbered.push(first ? a : b)
    }
    server.child.send({ cmd: 'exit' } satisfies UpstreamCommand)
    await once(server.child, 'exit')
    process.stdout.write(`upstream run ${run}: protocol 1 ${median(plain).toFixed(2)} µs, protocol 2 ${median(numbered).toFixed(2)} µs per message so far\n`)
  }
  const p1 = median(plain)
  const p2 = median(numbered)
  const lines = [
    '## Upstream numbering (protocol 2)',
    '',
    `Server CPU (user + system) per client message, one client sending ${MESSAGES.toLocaleString('en-US')} messages of 128 bytes, medians of ${plain.length} measurements each:`,
    '',
    '| | µs per message |',
    '|---|---|',
    `| protocol 1 (no numbering) | ${p1.toFixed(2)} |`,
    `| protocol 2 (\`v=2\`: counted, acknowledged) | ${p2.toFixed(2)} |`,
    `| ratio | ${(p2 / p1).toFixed(3)}x |`,
    ''
  ].join('\n')
  process.stdout.write(`\n${lines}\n`)
  mkdirSync(resultsDir, { recursive: true })
  writeFileSync(`${resultsDir}upstream-results.md`, lines)
  writeFileSync(`${resultsDir}upstream-results.json`, JSON.stringify({ messages: MESSAGES, plain, numbered, ratio: p2 / p1 }, null, 2))
}
