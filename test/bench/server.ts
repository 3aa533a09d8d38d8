import { performance } from 'node:perf_hooks'
import { contenders, type ContenderName } from './servers.ts'

/*
 * One server under test, in a child process of its own so that its CPU time and memory are
 * its own. Started by run.ts as `node --expose-gc … server.ts <contender> <heartbeatMs>
 * [redisUrl prefix]`; driven over the IPC channel. Broadcasts are started by a control
 * message from the parent, never by the clients.
 */

export type ServerCommand =
  | { cmd: 'mem' }
  | { cmd: 'cpu' }
  | { cmd: 'clients' }
  | { cmd: 'broadcast', count: number, mode: 'paced' | 'burst' | 'interval', intervalMs?: number }
  | { cmd: 'exit' }

export interface Cpu { user: number, system: number }
export interface Mem { rss: number, heapUsed: number }

const [name, heartbeat, redisUrl, prefix] = process.argv.slice(2)
const contender = await contenders[name as ContenderName]({ heartbeat: Number(heartbeat), redisUrl, prefix })

/** 128 bytes of JSON once stringified (with a 13+3 digit timestamp), the sender's clock first. */
const PAD = 'x'.repeat(128 - JSON.stringify({ ts: 1_700_000_000_000.123, seq: 100, pad: '' }).length)

function message (seq: number): object {
  return { ts: Math.round((performance.timeOrigin + performance.now()) * 1000) / 1000, seq: seq % 1000, pad: PAD }
}

function mem (): Mem {
  for (let i = 0; i < 3; i++) (globalThis as { gc?: () => void }).gc?.()
  const { rss, heapUsed } = process.memoryUsage()
  return { rss, heapUsed }
}

function reply (value: unknown): void {
  process.send!(value)
}

async function broadcasts (count: number, mode: string, intervalMs: number): Promise<void> {
  if (mode === 'burst') {
    for (let i = 0; i < count; i++) contender.broadcast(message(i))
    return
  }
  await new Promise<void>(resolve => {
    let i = 0
    const step = (): void => {
      contender.broadcast(message(i++))
      if (i >= count) {
        resolve()
        return
      }
      if (mode === 'paced') setImmediate(step)
      else setTimeout(step, intervalMs)
    }
    step()
  })
}

process.on('message', (command: ServerCommand) => {
  switch (command.cmd) {
    case 'mem': reply(mem()); break
    case 'cpu': reply(process.cpuUsage()); break
    case 'clients': reply(contender.clients()); break
    case 'broadcast':
      broadcasts(command.count, command.mode, command.intervalMs ?? 0).then(() => reply('sent'), err => reply(String(err)))
      break
    case 'exit':
      contender.close().finally(() => process.exit(0))
      setTimeout(() => process.exit(0), 3000).unref()
      break
  }
})

reply({ port: contender.port, mem: mem() })
