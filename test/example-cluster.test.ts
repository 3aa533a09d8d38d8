import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildCluster } from '../examples/cluster.ts'
import { ClientPresence } from '../lib/client/presence.ts'
import type { PresenceEvent } from '../plugin.ts'
import { connect, until, type TestClient } from './helpers.ts'
import { redisAvailable, startRedis } from './redis-server.ts'

/**
 * A chat connection on the wire: every frame read is kept, and the presence frames are
 * applied to a map as the page's client applies them (its "here now" list).
 */
class Member {
  readonly client: TestClient
  readonly frames: any[] = []
  readonly presence = new ClientPresence()

  constructor (client: TestClient) {
    this.client = client
  }

  static async open (app: FastifyInstance, path: string): Promise<Member> {
    return new Member(await connect(app, path))
  }

  /** Reads frames until one for which `where` holds (checked after each, presence applied), and returns it. */
  async read (where: (frame: any) => boolean): Promise<any> {
    for (;;) {
      const text = await this.client.next()
      const frame = JSON.parse(text)
      this.frames.push(frame)
      this.presence.take(text)
      if (where(frame)) return frame
    }
  }

  /** The data of the next chat message of `type` (the chat route sends its messages in resume-protocol envelopes). */
  async chat (type: string): Promise<any> {
    return (await this.read(frame => frame.type === 'message' && frame.data?.type === type)).data
  }

  /** The room's "here now" list: its users, sorted. */
  here (room: string): string[] | undefined {
    const users = this.presence.get(room)?.users
    return users === undefined ? undefined : Object.keys(users).sort()
  }

  /** Reads until the room's list is `users`. */
  async hereNow (room: string, users: string[]): Promise<string[]> {
    const same = (): boolean => JSON.stringify(this.here(room)) === JSON.stringify(users)
    if (!same()) await this.read(same)
    return this.here(room)!
  }

  /** How many `joined` or `left` notices of `user` in `room` came. */
  notices (type: 'joined' | 'left', user: string, room: string): number {
    return this.frames.filter(frame => frame.data?.type === type && frame.data.user === user && frame.data.room === room).length
  }
}

/** The example's two instances on one Redis (started for the test), listening on free ports, closed after it. */
async function twoInstances (t: Parameters<typeof startRedis>[0], prefix: string) {
  const redis = await startRedis(t)
  const [one, two] = await buildCluster({ redisUrl: redis.url, prefix, logger: false })
  t.teardown(async () => { await one.close(); await two.close() })
  await one.listen({ port: 0, host: '127.0.0.1' })
  await two.listen({ port: 0, host: '127.0.0.1' })
  return { redis, one, two }
}

/** The presence events of an instance, as they come. */
function events (app: FastifyInstance): PresenceEvent[] {
  const seen: PresenceEvent[] = []
  app.wsManager.on('presence', event => seen.push(event))
  return seen
}

const left = (seen: PresenceEvent[], user: string, room: string): boolean => seen.some(e => e.room === room && e.leaves.some(u => u.userId === user))

/**
 * Once both instances had the change (their chat listeners ran, announcing or not), a message
 * from `from` to the room: it reaches `member` after any notice either instance sent before it.
 */
async function settled (member: Member, from: FastifyInstance, room: string): Promise<void> {
  await from.wsManager.broadcast({ type: 'marker' }, { room })
  await member.chat('marker')
}

test('the cluster example: two instances, one chat, counts across both, health for probes', { skip: !redisAvailable() && 'redis-server is not installed' }, async (t) => {
  const { redis, one, two } = await twoInstances(t, 'example-test')

  const ann = await Member.open(one, '/ws?user=ann')
  const bob = await Member.open(two, '/ws?user=bob')
  t.match(await ann.read(() => true), { type: 'welcome', resumed: false })
  t.match(await bob.read(() => true), { type: 'welcome', resumed: false })
  t.match(await ann.chat('state'), { user: 'ann', rooms: ['lobby'] })
  t.match(await bob.chat('state'), { user: 'bob', rooms: ['lobby'] })
  ann.client.send({ type: 'say', data: { text: 'hello from one', room: 'lobby' } })
  t.match(await bob.chat('said'), { from: 'ann', text: 'hello from one' })
  t.match(await ann.chat('said'), { from: 'ann' })
  t.same(await ann.hereNow('lobby', ['ann', 'bob']), ['ann', 'bob'], 'ann, on one, lists bob, on two')
  t.same(await bob.hereNow('lobby', ['ann', 'bob']), ['ann', 'bob'])

  const cluster = (await one.inject('/cluster')).json()
  t.match(cluster, { here: 1, connections: 2 })
  t.same(cluster.users.sort(), ['ann', 'bob'])
  t.equal((await two.inject('/health')).statusCode, 200)

  await redis.stop()
  await until(async () => (await two.inject('/health')).statusCode === 503, 3000, 'not ready while Redis is away')
  await ann.client.close()
  await bob.client.close()
})

test('the cluster example: a chat session resumes on the other instance, with no second join notice and no leave', { skip: !redisAvailable() && 'redis-server is not installed' }, async (t) => {
  const { one, two } = await twoInstances(t, 'example-resume')
  const seenOnOne = events(one)
  const seenOnTwo = events(two)

  const bob = await Member.open(two, '/ws?user=bob')
  const ann = await connect(one, '/ws?user=ann')
  const welcome = await ann.json()
  t.match(await bob.chat('joined'), { user: 'bob' })
  t.match(await bob.chat('joined'), { user: 'ann' })
  await bob.hereNow('lobby', ['ann', 'bob'])
  for (const conn of one.wsManager.getUserConnections('ann')) conn.socket.terminate()
  await ann.closed
  bob.client.send({ type: 'say', data: { room: 'lobby', text: 'missed it' } })
  t.match(await bob.chat('said'), { text: 'missed it' })

  const back = await Member.open(two, `/ws?user=ann&resume=${welcome.token as string}&offset=${welcome.offset as number}`)
  t.match(await back.read(() => true), { type: 'welcome', clientId: welcome.clientId, resumed: true })
  t.match(await back.chat('said'), { text: 'missed it' })
  t.same(await back.hereNow('lobby', ['ann', 'bob']), ['ann', 'bob'], 'the resumed connection gets the lobby\'s presence again')
  back.client.send({ type: 'say', data: { room: 'lobby', text: 'back, on two' } })
  await bob.read(frame => frame.data?.text === 'back, on two')
  t.equal(bob.notices('joined', 'ann', 'lobby'), 1, 'no second join notice for ann')
  t.equal(bob.notices('left', 'ann', 'lobby'), 0, 'and no leave')
  t.same(bob.here('lobby'), ['ann', 'bob'], 'ann was listed all along')
  t.equal(bob.presence.get('lobby')!.users!.ann.length, 1, 'her resumed connection in the place of the one that dropped')

  // ann says goodbye on two, where she resumed: one, where she dropped, announces nothing
  await back.client.close()
  t.match(await bob.chat('left'), { user: 'ann', room: 'lobby' })
  await until(() => left(seenOnOne, 'ann', 'lobby') && left(seenOnTwo, 'ann', 'lobby'), 3000, 'both instances saw ann leave')
  await settled(bob, one, 'lobby')
  t.equal(bob.notices('left', 'ann', 'lobby'), 1, 'one leave notice, from the instance she left')
  await bob.hereNow('lobby', ['bob'])
  await bob.client.close()
})

test('the cluster example: a room\'s "here now" list is presence\'s, the same on both instances, and each notice comes once', { skip: !redisAvailable() && 'redis-server is not installed' }, async (t) => {
  const { one, two } = await twoInstances(t, 'example-users')
  const seenOnOne = events(one)
  const seenOnTwo = events(two)

  const ann = await Member.open(one, '/ws?user=ann')
  t.same(await ann.hereNow('lobby', ['ann']), ['ann'])
  const bob = await Member.open(two, '/ws?user=bob')
  t.same(await bob.hereNow('lobby', ['ann', 'bob']), ['ann', 'bob'], 'bob, on two, sees ann, on one')
  t.same(await ann.hereNow('lobby', ['ann', 'bob']), ['ann', 'bob'], 'and ann sees bob')

  bob.client.send({ type: 'join', id: 1, data: { room: 'dev' } })
  t.same((await bob.read(frame => frame.type === 'join.result')).data, { room: 'dev', users: ['bob'] })
  await bob.hereNow('dev', ['bob'])
  await until(async () => (await one.wsManager.presence('dev')).bob !== undefined, 3000, 'one knows bob is in dev')
  ann.client.send({ type: 'join', id: 2, data: { room: 'dev' } })
  t.same((await ann.read(frame => frame.type === 'join.result')).data, { room: 'dev', users: ['ann', 'bob'] }, 'the answer on one lists bob, on two')
  t.same(await ann.hereNow('dev', ['ann', 'bob']), ['ann', 'bob'])
  t.same(await bob.hereNow('dev', ['ann', 'bob']), ['ann', 'bob'])
  t.same(ann.frames.filter(frame => frame.data?.type === 'state').at(-1).data.rooms, ['dev', 'lobby'], 'ann\'s state, sent before the answer')

  await settled(ann, two, 'lobby')
  await settled(bob, one, 'lobby')
  t.same([ann.notices('joined', 'bob', 'lobby'), bob.notices('joined', 'ann', 'dev'), ann.notices('joined', 'ann', 'dev')], [1, 1, 1], 'each join notice once, on both instances')

  await bob.client.close()
  t.same(await ann.hereNow('lobby', ['ann']), ['ann'], 'bob gone from the lobby')
  t.same(await ann.hereNow('dev', ['ann']), ['ann'], 'and from dev')
  await until(() => ['lobby', 'dev'].every(room => left(seenOnOne, 'bob', room) && left(seenOnTwo, 'bob', room)), 3000, 'both instances saw bob leave')
  await settled(ann, two, 'lobby')
  t.same([ann.notices('left', 'bob', 'lobby'), ann.notices('left', 'bob', 'dev')], [1, 1], 'each leave notice once')
  await ann.client.close()
})
