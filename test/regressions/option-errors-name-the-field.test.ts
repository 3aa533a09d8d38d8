import { test } from 'tap'
import Fastify from 'fastify'
import wsStabilizer from '../../plugin.ts'

/*
 * Defects: a bad field inside `config.ws.heartbeat` or `config.ws.reconnect` (each may
 * also be a boolean) was reported against the whole object; and the "known options"
 * of an unknown-option error left out the options checked beside the schema
 * (identify, adapter, prometheus; a route's identify, authenticate, messages).
 */

async function routeError (ws: unknown): Promise<string> {
  const app = Fastify()
  await app.register(wsStabilizer)
  try {
    app.get('/ws', { websocket: true, config: { ws: ws as false } }, () => {})
    return 'no error'
  } catch (err) {
    return (err as Error).message
  } finally {
    await app.close()
  }
}

test('config.ws errors name the field inside heartbeat and reconnect', async (t) => {
  t.match(await routeError({ heartbeat: { interval: 0 } }), /Expected `config\.ws\.heartbeat\.interval` to be a positive integer number of milliseconds, got `0`/)
  t.match(await routeError({ heartbeat: { mode: 'pong' } }), /Expected `config\.ws\.heartbeat\.mode` to be `ping` .*, got `"pong"`/)
  t.match(await routeError({ heartbeat: { intervall: 5 } }), /Unknown option `config\.ws\.heartbeat\.intervall`; known options here are `enabled`, `interval`, `timeout`, `mode`$/)
  t.match(await routeError({ reconnect: { replay: 'yes' } }), /Expected `config\.ws\.reconnect\.replay` to be a boolean, got `"yes"`/)
  t.match(await routeError({ reconnect: { maxDisconnect: 0 } }), /Expected `config\.ws\.reconnect\.maxDisconnect` to be a positive integer number of milliseconds, got `0`/)
  t.match(await routeError({ heartbeat: 5 }), /Expected `config\.ws\.heartbeat` to be `false` or an object with enabled, interval, timeout, mode, got `5`/, 'neither a boolean nor an object: the union is named')
  t.match(await routeError({ heartbeat: null }), /Expected `config\.ws\.heartbeat` to be `false` or an object .*, got `null`/)
  t.match(await routeError({ heartbeat: { mode: {} } }), /Expected `config\.ws\.heartbeat\.mode` to be `ping` .*, got `\{\}`/, 'an object where no object fits')
})

test('the known options of an unknown-option error include the ones checked beside the schema', async (t) => {
  const route = await routeError({ colour: 'blue' })
  for (const name of ['identify', 'authenticate', 'messages', 'rooms', 'heartbeat']) t.match(route, new RegExp(`\`${name}\``), `route: ${name}`)
  const app = Fastify()
  const err = await app.register(wsStabilizer, { colour: 'blue' } as object).then(() => undefined, (e: unknown) => e as Error)
  await app.close()
  t.match(err?.message, /Unknown option `colour`/)
  for (const name of ['identify', 'adapter', 'prometheus', 'heartbeat', 'logLevel']) t.match(err?.message, new RegExp(`\`${name}\``), `plugin: ${name}`)
})
