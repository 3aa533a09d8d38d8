import { test } from 'tap'
import v8 from 'node:v8'
import vm from 'node:vm'
import type { FastifyInstance } from 'fastify'
import type { ManagedConnection } from '../../plugin.ts'
import { Deadlines } from '../../lib/deadlines.ts'
import { TestClient, buildApp, until, urlOf } from '../helpers.ts'

/*
 * Found by test/fuzz.test.ts (its protocol 2 cases): a connection that had gone stayed
 * reachable until a deadline it no longer had came up. The one timer of many deadlines
 * (lib/deadlines.ts) kept a cancelled deadline's item in its heap until that time: a
 * server's request settled (answered, or failed when its connection ended) until its
 * timeout, with the error's stack and through it the socket and the connection; and a
 * connection with expiring credentials until they would have expired (hours, for a JWT),
 * whenever another connection's deadline kept the heap from being emptied.
 */

function getGc (): () => void {
  const existing = (globalThis as { gc?: () => void }).gc
  if (typeof existing === 'function') return existing
  v8.setFlagsFromString('--expose-gc')
  return vm.runInNewContext('gc') as () => void
}

async function collected (refs: Array<WeakRef<object>>): Promise<number> {
  const gc = getGc()
  for (let i = 0; i < 6; i++) {
    gc()
    await new Promise(resolve => setImmediate(resolve))
  }
  return refs.filter(r => r.deref() !== undefined).length
}

/** Connects `n` clients one after another; each leaves at once; the WeakRefs of their connections. */
async function churn (app: FastifyInstance, path: string, n: number, watch: (conn: ManagedConnection) => void = () => {}): Promise<Array<WeakRef<object>>> {
  const refs: Array<WeakRef<object>> = []
  const onConnect = (conn: ManagedConnection): void => {
    if (!conn.id.startsWith('gone')) return
    refs.push(new WeakRef(conn), new WeakRef(conn.socket))
    watch(conn)
  }
  app.wsManager.on('connect', onConnect)
  for (let i = 0; i < n; i++) {
    const client = await TestClient.open(urlOf(app, `${path}${path.includes('?') ? '&' : '?'}id=gone${i}`))
    await client.close()
  }
  await until(() => app.wsManager.getConnectionCount() === 1, 2000, 'only the one that stays')
  app.wsManager.off('connect', onConnect)
  return refs
}

const identify = (request: { query: unknown }): { clientId?: string } => ({ clientId: (request.query as { id?: string }).id })

test('regression: a request that failed with its connection does not keep the connection until its timeout', async (t) => {
  const app = await buildApp(t, {}, app => {
    app.get('/ws', { websocket: true, config: { ws: { identify } } }, () => {})
  })
  const stays = await TestClient.open(urlOf(app, '/ws?id=stays'))
  t.teardown(() => stays.ws.terminate())
  // the one that stays has a request waiting: the deadlines' heap is never emptied
  const waiting = app.wsManager.getConnection('stays')!.request('confirm', null, { timeout: 60_000 }).catch(() => {})
  const failures: string[] = []
  const refs = await churn(app, '/ws', 20, conn => {
    conn.request('confirm', null, { timeout: 60_000 }).catch((err: { code: string }) => { failures.push(err.code) })
  })
  await until(() => failures.length === 20, 2000, 'every request failed')
  t.same(new Set(failures), new Set(['FST_WS_REQUEST_CLOSED']), 'each failed when its connection ended')
  t.equal(await collected(refs), 0, 'none of the 20 connections (or their sockets) is still reachable')
  stays.ws.terminate()
  await waiting
})

test('regression: a connection whose credentials expire in an hour is not kept for the hour after it left', async (t) => {
  const app = await buildApp(t, {}, app => {
    app.get('/ws', { websocket: true, config: { ws: { identify, authenticate: () => ({ userId: 'ann', expiresAt: Date.now() + 3_600_000 }) } } }, () => {})
  })
  const stays = await TestClient.open(urlOf(app, '/ws?id=stays&access_token=x'))
  t.teardown(() => stays.ws.terminate())
  const refs = await churn(app, '/ws?access_token=x', 20)
  t.equal(refs.length, 40)
  t.equal(await collected(refs), 0, 'none of the 20 connections (or their sockets) is still reachable')
})

test('regression: deadlines rebuilt without their cancelled entries still come due in order', async (t) => {
  const due: string[] = []
  const deadlines = new Deadlines<object>(item => due.push((item as { name: string }).name))
  const now = Date.now()
  const kept = [{ name: 'b' }, { name: 'a' }, { name: 'c' }]
  deadlines.set(kept[0], now + 30)
  deadlines.set(kept[1], now + 10)
  // made and cancelled in a function of their own: nothing of the test holds them
  const refs = ((): Array<WeakRef<object>> => {
    const gone = Array.from({ length: 40 }, (_, i) => ({ name: `x${i}` }))
    for (const [i, item] of gone.entries()) deadlines.set(item, now + 60_000 + i)
    deadlines.set(kept[2], now + 40)
    for (const item of gone) deadlines.delete(item)
    return gone.map(item => new WeakRef(item))
  })()
  t.equal(deadlines.size, 3)
  t.equal(await collected(refs), 0, 'the cancelled items are not kept')
  await until(() => due.length === 3, 2000, 'the three left')
  t.same(due, ['a', 'b', 'c'])
})
