import fp from 'fastify-plugin'
import fastifyWebsocket, { type WebsocketPluginOptions } from '@fastify/websocket'
import type { FastifyInstance, FastifyRequest, RouteOptions, preHandlerHookHandler } from 'fastify'
import type { WebSocket } from 'ws'
import { resolveOptions, type WsStabilizerOptions } from './lib/options.ts'
import { resolveRouteOptions } from './lib/route-options.ts'
import { WsManager } from './lib/manager.ts'
import { onConnection, refuseUpgrades, releaseUpgradeListener, upgradePreHandler } from './lib/upgrade.ts'
import { connectionOf } from './lib/inbound/listeners.ts'
import { AlreadyRegisteredError } from './lib/errors.ts'
import { registerPrometheus } from './lib/prometheus.ts'
import { guardLateUpgrades } from './lib/shutdown.ts'
import './types/index.ts'
import { kSocketError } from './lib/symbols.ts'
import { registerDashboard } from './lib/dashboard/routes.ts'

const PROXY_IDLE_WARNING_MS = 55_000

async function wsStabilizer (fastify: FastifyInstance, opts: WsStabilizerOptions): Promise<void> {
  if (fastify.hasDecorator('wsManager')) throw new AlreadyRegisteredError()
  const options = resolveOptions(opts)
  const log = fastify.log.child({ plugin: 'fastify-websocket-stabilizer' }, options.logLevel === undefined ? undefined : { level: options.logLevel })
  const manager = new WsManager(options, log)
  fastify.decorate('wsManager', manager)
  fastify.decorateRequest('wsConnection', null)
  if (options.prometheus !== undefined) {
    const unregister = registerPrometheus(options.prometheus, () => ({
      stats: manager.getStats(),
      adapter: { name: manager.adapter.name, health: manager.adapter.health() },
      draining: manager.draining
    }))
    fastify.addHook('onClose', async () => unregister())
  }

  const ownsWebsocket = !fastify.hasDecorator('websocketServer')
  // ws allocates up to maxPayload before we can look at a message; routes may raise it
  const wsOptions = {
    maxPayload: options.limits.maxMessageSize,
    closeTimeout: options.closeTimeout,
    perMessageDeflate: options.compression === 'deflate' ? { threshold: 1024, concurrencyLimit: 10 } : false
  }

  // Added before @fastify/websocket registers its own, so these run first.
  fastify.addHook('onRoute', (route: RouteOptions) => {
    if (route.websocket !== true && route.wsHandler === undefined) return
    const methods = Array.isArray(route.method) ? route.method : [route.method]
    if (methods.every(m => m === 'HEAD')) return
    const resolved = resolveRouteOptions(route.url, route.config?.ws, options)
    if (resolved === undefined) return
    const { settings, router } = resolved
    if (router !== undefined) manager.useRouter(settings, router)
    const preHandler = upgradePreHandler(manager, settings) as preHandlerHookHandler
    route.preHandler = route.preHandler === undefined ? [preHandler] : [...[route.preHandler].flat(), preHandler]
    // @fastify/websocket takes `handler` as the WebSocket handler of a `websocket: true` route
    if (ownsWebsocket && route.websocket === true) route.handler = releaseUpgradeListener(route.handler as never)
    else if (ownsWebsocket) route.wsHandler = releaseUpgradeListener(route.wsHandler!)
    if (settings.heartbeat.enabled) manager.heartbeat.useInterval(settings.heartbeat.interval)
    if (settings.reconnect?.replay === true) manager.useReplay()
    if (settings.presence !== undefined) manager.usePresence()
    if (settings.limits.maxMessageSize > wsOptions.maxPayload) {
      wsOptions.maxPayload = settings.limits.maxMessageSize
      if (ownsWebsocket) (fastify.websocketServer.options as { maxPayload: number }).maxPayload = wsOptions.maxPayload
    }
  })
  fastify.addHook('onReady', async () => {
    if (options.heartbeat.enabled && options.heartbeat.interval >= PROXY_IDLE_WARNING_MS) {
      log.warn({ interval: options.heartbeat.interval }, 'heartbeat.interval is 55 s or more: proxies that drop idle connections after 60 s (nginx proxy_read_timeout, AWS ALB idle timeout) may close sockets first')
    }
    await manager.start()
  })
  fastify.addHook('preClose', async () => {
    dashboard?.close()
    const release = guardLateUpgrades(fastify.server)
    await manager.gracefulShutdown()
    release()
  })
  fastify.addHook('onClose', async () => {
    manager.heartbeat.stop()
  })

  if (ownsWebsocket) {
    await fastify.register(fastifyWebsocket, { options: wsOptions, errorHandler } satisfies WebsocketPluginOptions)
  } else {
    // ws fills in its defaults, so both are always set
    const theirs = fastify.websocketServer.options as { maxPayload: number, closeTimeout: number }
    if (theirs.maxPayload > options.limits.maxMessageSize || theirs.closeTimeout > options.closeTimeout) {
      log.warn({ maxPayload: theirs.maxPayload, closeTimeout: theirs.closeTimeout }, '@fastify/websocket was registered by the app: pass it options { maxPayload, closeTimeout } matching limits.maxMessageSize and closeTimeout, or let this plugin register it')
    }
  }
  // after @fastify/websocket's own onRoute, which wraps every handler: plain routes refuse upgrades with 404
  fastify.addHook('onRoute', (route: RouteOptions) => {
    if (route.websocket !== true && route.wsHandler === undefined) route.handler = refuseUpgrades(route.handler)
  })
  fastify.websocketServer.on('connection', onConnection(manager))
  // closed first thing in preClose (above), before @fastify/websocket closes every socket without a code
  const dashboard = options.dashboard === undefined ? undefined : registerDashboard(fastify, manager, options.dashboard, log)

  /** Socket errors are logged by the connection's own listener; handler errors close that socket with 1011. */
  function errorHandler (error: Error, socket: WebSocket, request: FastifyRequest): void {
    const conn = connectionOf(socket)
    if (conn === undefined) {
      request.log.error({ err: error }, 'websocket error')
      socket.terminate()
    } else if (conn[kSocketError] !== error) {
      manager.handlerFailed(conn, error)
    }
  }
}

/** The plugin: `fastify.register(wsStabilizer, options)`. Registers @fastify/websocket unless the app already has. */
const plugin = fp(wsStabilizer, { fastify: '5.x', name: 'fastify-websocket-stabilizer' })

export default plugin
export { plugin as wsStabilizer }
export * from './lib/index.ts'
export type * from './types/index.ts'
