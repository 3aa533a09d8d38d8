import { createServer, type Server as HttpServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import Fastify, { type FastifyInstance } from 'fastify'
import fastifyWebsocket from '@fastify/websocket'
import { WebSocketServer, type WebSocket } from 'ws'
import { Server as SocketIoServer } from 'socket.io'
import { createAdapter } from '@socket.io/redis-adapter'
import { Redis } from 'ioredis'
import wsStabilizer from '../../plugin.ts'
import { RedisAdapter } from '../../lib/adapters/redis.ts'

/*
 * The contenders of `npm run bench`, one function each. Every one listens on a free
 * loopback port and offers the same three things: broadcast a JSON value to every client,
 * count its clients, close. Each runs in a child process of its own (see server.ts).
 */

export type ContenderName = 'ws' | 'fastify-ws' | 'socket.io' | 'plugin' | 'plugin+flush' | 'socket.io+redis' | 'plugin+redis'

export interface ContenderOptions {
  /** Heartbeat period in ms (each contender's own mechanism). */
  heartbeat: number
  /** For the cluster contenders. */
  redisUrl?: string
  prefix?: string
}

export interface Contender {
  port: number
  broadcast (message: object): void
  clients (): number
  close (): Promise<void>
}

const HOST = '127.0.0.1'

async function listen (server: HttpServer): Promise<number> {
  await new Promise<void>(resolve => server.listen(0, HOST, resolve))
  return (server.address() as AddressInfo).port
}

type Alive = WebSocket & { isAlive?: boolean }

function markAlive (this: Alive): void {
  this.isAlive = true
}

/**
 * The heartbeat recipe of the ws README, in our words: every period, a socket that did not
 * answer the last ping is terminated, the others are marked and pinged.
 */
function isAliveRecipe (sockets: () => Iterable<WebSocket>, period: number): NodeJS.Timeout {
  const timer = setInterval(() => {
    for (const socket of sockets() as Iterable<Alive>) {
      if (socket.isAlive === false) {
        socket.terminate()
        continue
      }
      socket.isAlive = false
      socket.ping()
    }
  }, period)
  timer.unref()
  return timer
}

function track (socket: Alive): void {
  socket.isAlive = true
  socket.on('pong', markAlive)
}

/** Raw ws: a WebSocketServer and a send loop over `wss.clients`. */
export async function rawWs (options: ContenderOptions): Promise<Contender> {
  const server = createServer()
  const wss = new WebSocketServer({ server, perMessageDeflate: false })
  wss.on('connection', track)
  const timer = isAliveRecipe(() => wss.clients, options.heartbeat)
  const port = await listen(server)
  return {
    port,
    broadcast (message) {
      const data = Buffer.from(JSON.stringify(message))
      for (const client of wss.clients) {
        if (client.readyState === 1) client.send(data, { binary: false })
      }
    },
    clients: () => wss.clients.size,
    async close () {
      clearInterval(timer)
      for (const client of wss.clients) client.terminate()
      await new Promise(resolve => server.close(resolve))
    }
  }
}

/** @fastify/websocket with a hand-written Set of sockets. */
export async function fastifyWs (options: ContenderOptions): Promise<Contender> {
  const app = Fastify()
  await app.register(fastifyWebsocket, { options: { perMessageDeflate: false } })
  const sockets = new Set<WebSocket>()
  app.get('/ws', { websocket: true }, socket => {
    sockets.add(socket)
    track(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  const timer = isAliveRecipe(() => sockets, options.heartbeat)
  await app.listen({ port: 0, host: HOST })
  return {
    port: (app.server.address() as AddressInfo).port,
    broadcast (message) {
      const data = Buffer.from(JSON.stringify(message))
      for (const socket of sockets) {
        if (socket.readyState === 1) socket.send(data, { binary: false })
      }
    },
    clients: () => sockets.size,
    async close () {
      clearInterval(timer)
      for (const socket of sockets) socket.terminate()
      await app.close()
    }
  }
}

async function socketIo (options: ContenderOptions, redis: boolean): Promise<Contender> {
  const server = createServer()
  const io = new SocketIoServer(server, {
    transports: ['websocket'],
    perMessageDeflate: false,
    httpCompression: false,
    serveClient: false,
    pingInterval: options.heartbeat,
    pingTimeout: options.heartbeat * 2
  })
  let pub: Redis | undefined
  let sub: Redis | undefined
  if (redis) {
    pub = new Redis(options.redisUrl!)
    sub = pub.duplicate()
    io.adapter(createAdapter(pub, sub, { key: options.prefix }))
    // the adapter subscribes asynchronously: wait until it has
    await Promise.all([pub.ping(), sub.ping().catch(() => {})])
    await new Promise(resolve => setTimeout(resolve, 200))
  }
  const port = await listen(server)
  return {
    port,
    broadcast (message) {
      io.emit('m', message)
    },
    clients: () => io.engine.clientsCount,
    async close () {
      io.disconnectSockets(true)
      await io.close()
      pub?.disconnect()
      sub?.disconnect()
    }
  }
}

/** Socket.IO 4 (`io.emit`), WebSocket transport only, no compression. */
export async function socketIoMemory (options: ContenderOptions): Promise<Contender> {
  return await socketIo(options, false)
}

/** Socket.IO 4 with @socket.io/redis-adapter. */
export async function socketIoRedis (options: ContenderOptions): Promise<Contender> {
  return await socketIo(options, true)
}

async function stabilizer (options: ContenderOptions, redis: boolean, flushDelay = 0): Promise<Contender> {
  const app: FastifyInstance = Fastify()
  await app.register(wsStabilizer, {
    heartbeat: { interval: options.heartbeat, timeout: options.heartbeat * 3 },
    adapter: redis ? new RedisAdapter({ url: options.redisUrl!, prefix: options.prefix }) : undefined,
    flush: { delay: flushDelay }
  })
  app.get('/ws', { websocket: true }, () => {})
  await app.listen({ port: 0, host: HOST })
  const manager = app.wsManager
  return {
    port: (app.server.address() as AddressInfo).port,
    broadcast (message) {
      manager.broadcast(message).catch(() => {})
    },
    clients: () => manager.getConnectionCount(),
    async close () {
      await app.close()
    }
  }
}

/** This plugin, in-memory adapter (`fastify.wsManager.broadcast`). */
export async function pluginMemory (options: ContenderOptions): Promise<Contender> {
  return await stabilizer(options, false)
}

/** This plugin with write coalescing (`flush.delay`): 1 ms, or `FLUSH_DELAY=ms`. */
export async function pluginFlush (options: ContenderOptions): Promise<Contender> {
  return await stabilizer(options, false, Number(process.env.FLUSH_DELAY ?? 1))
}

/** This plugin with its RedisAdapter. */
export async function pluginRedis (options: ContenderOptions): Promise<Contender> {
  return await stabilizer(options, true)
}

export const contenders: Record<ContenderName, (options: ContenderOptions) => Promise<Contender>> = {
  ws: rawWs,
  'fastify-ws': fastifyWs,
  'socket.io': socketIoMemory,
  plugin: pluginMemory,
  'plugin+flush': pluginFlush,
  'socket.io+redis': socketIoRedis,
  'plugin+redis': pluginRedis
}

/** The client library a contender is reached with. */
export function clientKind (name: ContenderName): 'ws' | 'socket.io' {
  return name.startsWith('socket.io') ? 'socket.io' : 'ws'
}
