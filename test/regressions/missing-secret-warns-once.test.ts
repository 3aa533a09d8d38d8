import { test } from 'tap'
import { Writable } from 'node:stream'
import { buildApp, connect } from '../helpers.ts'

/*
 * Without `reconnect.secret`, tokens are signed with a random per-process secret: a resume
 * on another instance or after a restart fails as `invalid`. The plugin says so once, when
 * the first token is issued, whichever path issues it: most tokens go out in welcomes.
 */

const WARNING = 'no reconnect.secret configured'

async function app (t: Parameters<typeof buildApp>[0], secret?: string): Promise<{ app: Awaited<ReturnType<typeof buildApp>>, warnings: () => string[] }> {
  const lines: Array<{ level: number, msg: string }> = []
  const stream = new Writable({ write (chunk, _enc, cb) { lines.push(JSON.parse(chunk.toString())); cb() } })
  const built = await buildApp(t, secret === undefined ? {} : { reconnect: { secret } }, app => {
    app.get('/ws', { websocket: true, config: { ws: { reconnect: true } } }, () => {})
  }, { logger: { level: 'warn', stream } })
  return { app: built, warnings: () => lines.filter(l => l.level === 40 && l.msg.includes(WARNING)).map(l => l.msg) }
}

test('a welcome token issued without reconnect.secret warns, once', async (t) => {
  const { app: server, warnings } = await app(t)
  const first = await connect(server, '/ws')
  t.match(await first.json(), { type: 'welcome' })
  const second = await connect(server, '/ws')
  t.match(await second.json(), { type: 'welcome' })
  t.equal(warnings().length, 1, 'warned once, at the first welcome token')
  server.wsManager.generateReconnectToken('someone')
  t.equal(warnings().length, 1, 'not again for a token asked for by hand')
  await first.close()
  await second.close()
})

test('with a reconnect.secret, no warning', async (t) => {
  const { app: server, warnings } = await app(t, 'a-secret-of-at-least-32-characters!!')
  const client = await connect(server, '/ws')
  t.match(await client.json(), { type: 'welcome' })
  server.wsManager.generateReconnectToken('someone')
  t.same(warnings(), [])
  await client.close()
})
