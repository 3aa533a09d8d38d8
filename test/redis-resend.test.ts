import { test, type Test } from 'tap'
import { Redis } from 'ioredis'
import { RedisAdapter } from '../lib/adapters/redis.ts'
import type { RedisResumeStore } from '../lib/adapters/redis-resume-store.ts'
import type { LogEntry } from '../lib/resume/replay-log.ts'
import type { Session } from '../lib/resume/sessions.ts'
import { buildInjectedApp, until } from './helpers.ts'
import { redisAvailable, startRedis } from './redis-server.ts'
import { startReplyCutter, type ReplyCutter } from './redis-reply-cutter.ts'

/*
 * A resume store call whose reply was lost with the connection gives the answer it would have
 * given: ioredis sends the commands in flight when its connection dropped again once it is back
 * (`autoResendUnfulfilledCommands`), so the script ran twice. Before, the second run of a claim
 * answered "claimed before" (the client's resume refused as `invalid`), that of a take "no
 * session" (the session lost), and that of an append failed on ids already there (a failed
 * write logged). The store talks to Redis through a proxy that cuts the connection once Redis
 * has run the command, before its reply gets back; each test checks that the cut happened and
 * that Redis ran the script twice, so that none passes without the repeat.
 */

const skip = !redisAvailable() && 'redis-server is not installed (apt-get install -y redis-server)'
const PREFIX = 'resend'

interface Setup {
  store: RedisResumeStore
  adapter: RedisAdapter
  cutter: ReplyCutter
  direct: Redis
  /** How many EVALs Redis has run. */
  evals: () => Promise<number>
}

async function setup (t: Test): Promise<Setup> {
  const redis = await startRedis(t)
  const cutter = await startReplyCutter(t, redis.port)
  const direct = new Redis(redis.url)
  t.teardown(() => direct.disconnect())
  const adapter = new RedisAdapter({ url: cutter.url, prefix: PREFIX })
  const app = await buildInjectedApp(t, { adapter })
  const store = adapter.resumeStore({ instanceId: 'resend-test', replayMessages: 100, replayBytes: 1_000_000, sweepEvery: 60_000, retention: 60_000 }, app.log)
  t.teardown(() => store.close())
  const evals = async (): Promise<number> => Number(/cmdstat_eval:calls=(\d+)/.exec(await direct.info('commandstats'))?.[1] ?? 0)
  return { store, adapter, cutter, direct, evals }
}

test('a claim whose reply was lost is granted, once', { skip }, async (t) => {
  const { store, cutter, direct, evals } = await setup(t)
  const expiresAt = Date.now() + 60_000
  const before = await evals()
  cutter.arm(`${PREFIX}:nonce:{n1}`)
  t.equal(await store.claim('n1', expiresAt), true, 'granted')
  t.equal(cutter.cuts, 1, 'its reply was cut')
  t.equal(await evals() - before, 2, 'and its script ran twice')
  t.equal(await store.claim('n1', expiresAt), false, 'another claim of the nonce is refused')
  t.ok(await direct.pttl(`${PREFIX}:nonce:{n1}`) > 0, 'the nonce expires')
})

/** Claims `used` and gives it back paired with `partner`, as a resume never heard from does. */
async function released ({ store, direct }: Setup, used: string, partner: string, expiresAt: number): Promise<void> {
  await store.claim(used, expiresAt)
  store.release({ nonce: used, expiresAt }, { nonce: partner, expiresAt })
  await until(async () => await direct.exists(`${PREFIX}:pair:{${used}}`, `${PREFIX}:pair:{${partner}}`) === 2 && await direct.exists(`${PREFIX}:nonce:{${used}}`) === 0, 2000, 'the release')
}

test('a claim of a released nonce whose reply was lost is granted and spends its partner', { skip }, async (t) => {
  const s = await setup(t)
  const { store, cutter, direct, evals } = s
  const expiresAt = Date.now() + 60_000
  await released(s, 'a', 'b', expiresAt)
  const before = await evals()
  cutter.arm(`${PREFIX}:nonce:{a}`)
  t.equal(await store.claim('a', expiresAt), true, 'granted: the repeat answered the pair the first run took')
  t.equal(cutter.cuts, 1, 'its reply was cut')
  t.equal(await evals() - before, 3, 'the nonce\'s script ran twice, the partner\'s once')
  t.equal(await store.claim('b', expiresAt), false, 'the partner is spent')
  t.equal(await store.claim('a', expiresAt), false, 'and the nonce')
  t.equal(await direct.exists(`${PREFIX}:pair:{a}`, `${PREFIX}:pair:{b}`), 0, 'both pairs are gone')
})

test('a claim whose partner\'s reply was lost is granted and spends its partner', { skip }, async (t) => {
  const s = await setup(t)
  const { store, cutter, evals } = s
  const expiresAt = Date.now() + 60_000
  await released(s, 'c', 'd', expiresAt)
  const before = await evals()
  // only the partner's script names the partner's nonce
  cutter.arm(`${PREFIX}:nonce:{d}`)
  t.equal(await store.claim('c', expiresAt), true, 'granted')
  t.equal(cutter.cuts, 1, 'the partner\'s reply was cut')
  t.equal(await evals() - before, 3, 'the nonce\'s script ran once, the partner\'s twice')
  t.equal(await store.claim('d', expiresAt), false, 'the partner is spent')
  t.equal(await store.claim('c', expiresAt), false, 'and the nonce')
})

test('a take whose reply was lost returns the session, and its fence refuses the next take and an older save', { skip }, async (t) => {
  const { store, cutter, direct, evals } = await setup(t)
  const key = `${PREFIX}:session:{c1}`
  const session: Session = { clientId: 'c1', userId: 'ann', metadata: { note: 'a "quoted" /path/' }, rooms: ['lobby'], stream: 'gone', connectedAt: Date.now() - 1000, expiresAt: Date.now() + 60_000 }
  store.saveSession(session)
  await until(async () => await direct.exists(key) === 1, 2000, 'the session saved')
  const before = await evals()
  cutter.arm(key)
  t.same(await store.takeSession('c1'), session, 'the session, as saved')
  t.equal(cutter.cuts, 1, 'its reply was cut')
  t.equal(await evals() - before, 2, 'and its script ran twice')
  t.match(JSON.parse((await direct.get(key))!), { fence: true, generation: 1 }, 'the fence is in its place')
  t.ok(await direct.pttl(key) > 0, 'and expires')
  t.equal(await store.takeSession('c1'), undefined, 'another take finds nothing')
  store.saveSession({ ...session, generation: 0 })
  store.saveSession({ ...session, clientId: 'c2' })
  // the saves go in order on one connection: once c2's is there, c1's was refused
  await until(async () => await direct.exists(`${PREFIX}:session:{c2}`) === 1, 2000, 'the next save')
  t.match(JSON.parse((await direct.get(key))!), { fence: true, generation: 1 }, 'a save of the older generation was refused')
})

function entry (offset: number): LogEntry {
  return { offset, id: `resend-test:${offset}`, at: Date.now(), target: { rooms: ['lobby'] }, frame: Buffer.from(`{"n":${offset}}`) }
}

test('an append whose reply was lost adds each entry once and counts no failed write', { skip }, async (t) => {
  const { store, adapter, cutter, evals } = await setup(t)
  store.append('s1', entry(1))
  await until(async () => (await store.read('s1')).length === 1, 2000, 'the first entry')
  const before = await evals()
  cutter.arm(`${PREFIX}:log:{s1}`)
  // one turn: one script for both
  store.append('s1', entry(2))
  store.append('s1', entry(3))
  await until(() => cutter.cuts === 1, 2000, 'the cut')
  await until(async () => await evals() - before === 2, 2000, 'the script to run again')
  // answered after the repeat, on the same connection
  await adapter.client.ping()
  t.equal(store.failedWrites, 0, 'no failed write')
  t.same((await store.read('s1')).map(e => e.offset), [1, 2, 3], 'each entry once')
  store.append('s1', entry(4))
  await until(async () => (await store.read('s1')).length === 4, 2000, 'the next entry')
  t.equal(store.failedWrites, 0, 'and the next write is fine')
})

test('an append to a key that is not a stream still fails, counted', { skip }, async (t) => {
  const { store, direct } = await setup(t)
  await direct.set(`${PREFIX}:log:{s2}`, 'not a stream', 'PX', 60_000)
  store.append('s2', entry(1))
  await until(() => store.failedWrites === 1, 2000, 'the failed write')
  t.equal(await direct.get(`${PREFIX}:log:{s2}`), 'not a stream', 'the key is as it was')
})
