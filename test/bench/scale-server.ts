import type { AddressInfo } from 'node:net'
import { performance } from 'node:perf_hooks'
import Fastify from 'fastify'
import wsStabilizer from '../../plugin.ts'
import { RedisAdapter } from '../../lib/adapters/redis.ts'
import { rawWs, socketIoRedis, type Contender } from './servers.ts'

/*
 * One server process of `npm run bench:scale` (scale.ts): a contender of servers.ts (raw ws
 * with the isAlive recipe, Socket.IO + redis-adapter) or the plugin with its RedisAdapter,
 * on a plain route or, for the rolling restart, on a resume route (`config.ws.reconnect`,
 * one secret for every instance) listening on a given port: a new process started while
 * the old one drains takes the port as soon as it is free. Driven over IPC; it exits when
 * the parent goes.
 *
 * argv: <contender> <heartbeatMs> <redisUrl> <prefix> <port (0: any)> [<replayMessages> <replayBytes>]
 */

export type ScaleServerCommand =
  | { cmd: 'mem' }
  | { cmd: 'clients' }
  | { cmd: 'broadcast', seq: number }
  /** Answers once the broadcasts sent before it have gone out (published): see the rolling restart's switch of broadcaster. */
  | { cmd: 'sync' }
  | { cmd: 'listen' }
  | { cmd: 'exit' }

export type ScaleContender = 'ws' | 'plugin+redis' | 'socket.io+redis' | 'plugin+resume'

export const RESUME_SECRET = 'bench-scale-reconnect-secret'

const [name, heartbeatArg, redisUrl, prefix, portArg, replayMessages, replayBytes] = process.argv.slice(2) as [ScaleContender, string, string, string, string, string?, string?]
const heartbeat = Number(heartbeatArg)
/** `--batch=size/interval` and `--backlog=n` of scale.ts, passed down in the environment. */
const batch = process.env.SCALE_BATCH === undefined ? undefined : (([batchSize, batchInterval]) => ({ batchSize, batchInterval }))(process.env.SCALE_BATCH.split('/').map(Number))
const backlog = process.env.SCALE_BACKLOG === undefined ? undefined : Number(process.env.SCALE_BACKLOG)
const wanted = Number(portArg)

// the parent is gone: so is this process (a run never leaves servers behind)
process.on('disconnect', () => process.exit(0))

/** 128 bytes of JSON, as in `npm run bench`: the sender's clock, the sequence number, padding. */
const PAD = 'x'.repeat(128 - JSON.stringify({ ts: 1_700_000_000_000.123, seq: 100, pad: '' }).length)

function message (seq: number): object {
  return { ts: Math.round((performance.timeOrigin + performance.now()) * 1000) / 1000, seq, pad: PAD }
}

function sleep (ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms))
}

interface Plugin extends Contender { listen (): Promise<number> }

/** The plugin with its RedisAdapter; `resume`: the route speaks the resume protocol. */
async function plugin (resume: boolean): Promise<Plugin> {
  const app = Fastify()
  await app.register(wsStabilizer, {
    heartbeat: { interval: heartbeat, timeout: heartbeat * 3 },
    ...(batch === undefined ? {} : { shutdown: batch }),
    adapter: new RedisAdapter({ url: redisUrl, prefix }),
    ...(resume
      ? {
          reconnect: {
            secret: RESUME_SECRET,
            // the log's bounds (defaults 1000 messages, 1 MiB) also bound a reconnect storm: see scale.ts
            ...(replayMessages === undefined ? {} : { replayMessages: Number(replayMessages), replayBytes: Number(replayBytes) })
          }
        }
      : {})
  })
  app.get('/ws', { websocket: true, config: { ws: resume ? { reconnect: true } : {} } }, () => {})
  // everything but the port: the adapter is connected and the log takes messages from now on
  await app.ready()
  const manager = app.wsManager
  return {
    port: 0,
    async listen () {
      // the port of an instance still draining frees when its drain is over
      for (;;) {
        try {
          await app.listen({ port: wanted, host: '127.0.0.1', ...(backlog === undefined ? {} : { backlog }) })
          return (app.server.address() as AddressInfo).port
        } catch (err) {
          if ((err as { code?: string }).code !== 'EADDRINUSE') throw err
          await sleep(10)
        }
      }
    },
    broadcast (value) {
      published = manager.broadcast(value).then(() => {}, () => {})
    },
    clients: () => manager.getConnectionCount(),
    async close () {
      // the same drain fastify.close() runs (it reuses this one), for its report
      report = await manager.gracefulShutdown()
      await app.close()
    }
  }
}

let report: object | undefined

let contender: Contender
let listen: () => Promise<number>
if (name === 'plugin+redis' || name === 'plugin+resume') {
  const p = await plugin(name === 'plugin+resume')
  contender = p
  listen = p.listen
} else {
  // pingInterval = heartbeat, pingTimeout = 2 × heartbeat for Socket.IO (servers.ts)
  contender = name === 'ws' ? await rawWs({ heartbeat }) : await socketIoRedis({ heartbeat, redisUrl, prefix })
  listen = async () => contender.port
}

function mem (): { rss: number, heapUsed: number } {
  for (let i = 0; i < 3; i++) (globalThis as { gc?: () => void }).gc?.()
  const { rss, heapUsed } = process.memoryUsage()
  return { rss, heapUsed }
}

/** The last broadcast of the plugin, until published. */
let published: Promise<void> = Promise.resolve()

function reply (value: unknown): void {
  if (process.connected) process.send!(value)
}

process.on('message', (command: ScaleServerCommand) => {
  switch (command.cmd) {
    case 'mem': reply(mem()); break
    case 'clients': reply(contender.clients()); break
    case 'broadcast':
      contender.broadcast(message(command.seq))
      break
    case 'sync': published.then(() => reply({ synced: true }), () => {}); break
    case 'listen':
      listen().then(port => reply({ port }), err => reply({ error: String(err) }))
      break
    case 'exit': {
      const started = performance.now()
      // bounded: 40 s, and the shutdown's batches on top (see `batch`); the parent waits 45 s and those
      const batches = batch === undefined || batch.batchSize === 0 ? 0 : Math.ceil(contender.clients() / batch.batchSize) * batch.batchInterval
      setTimeout(() => process.exit(0), 40_000 + batches).unref()
      contender.close().finally(() => {
        if (process.connected) process.send!({ closedMs: performance.now() - started, report }, () => process.exit(0))
        else process.exit(0)
      })
      break
    }
  }
})

reply({ ready: true, mem: mem() })
