import { test } from 'tap'
import type { AddressInfo } from 'node:net'
import { buildApp } from '../helpers.ts'
import { RawClient, Refused } from '../fuzz/raw-client.ts'
import { pluginOptions } from '../fuzz/app.ts'

/* Found by test/fuzz.test.ts: upgrades that raced through an async identify could pass maxConnectionsPerIp, checked only before the upgrade (now again at registration). */

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

test('regression: maxConnectionsPerIp holds for upgrades that race through an async identify', async (t) => {
  const app = await buildApp(t, { ...pluginOptions, limits: { maxConnectionsPerIp: 2 } }, app => {
    app.get('/ws', { websocket: true, config: { ws: { identify: async () => { await sleep(20); return undefined } } } }, () => {})
  })
  const port = (app.server.address() as AddressInfo).port
  const results = await Promise.all(Array.from({ length: 8 }, async () => {
    try {
      const c = await RawClient.open(port, '/ws', { localAddress: '127.0.8.1' })
      await c.until(() => c.closeCode !== undefined, 200)
      return c
    } catch (err) {
      return err as Refused
    }
  }))
  t.equal(app.wsManager.getConnectionCount(), 2, 'two registered, the others refused')
  const codes = results.map(r => r instanceof RawClient ? r.closeCode ?? 'open' : r.status).sort()
  t.same(codes.filter(c => c === 'open').length, 2)
  t.ok(codes.every(c => c === 'open' || c === 1013 || c === 429), `the others got 1013 or 429 (${codes.join(',')})`)
  t.equal(app.wsManager.getStats().rejectedTotal.ip_limit, 6)
  for (const r of results) if (r instanceof RawClient) r.destroy()
})
