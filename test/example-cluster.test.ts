import { test } from 'tap'
import { buildCluster } from '../examples/cluster.ts'
import { connect, type TestClient } from './helpers.ts'
import { redisAvailable, startRedis } from './redis-server.ts'

/** The data of the next chat message of `type` (the chat route sends its messages in resume-protocol envelopes). */
async function chat (client: TestClient, type: string): Promise<any> {
  for (;;) {
    const frame = await client.json()
    if (frame.type === 'message' && frame.data?.type === type) return frame.data
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

test('the cluster example: two instances, one chat, counts across both, health for probes', { skip: !redisAvailable() && 'redis-server is not installed' }, async (t) => {
  const { redis, one, two } = await twoInstances(t, 'example-test')

  const ann = await connect(one, '/ws?user=ann')
  const bob = await connect(two, '/ws?user=bob')
  t.match(await ann.json(), { type: 'welcome', resumed: false })
  t.match(await bob.json(), { type: 'welcome', resumed: false })
  t.match(await chat(ann, 'state'), { user: 'ann', rooms: ['lobby'] })
  t.match(await chat(bob, 'state'), { user: 'bob', rooms: ['lobby'] })
  ann.send({ type: 'say', data: { text: 'hello from one', room: 'lobby' } })
  t.match(await chat(bob, 'said'), { from: 'ann', text: 'hello from one' })
  t.match(await chat(ann, 'said'), { from: 'ann' })

  const cluster = (await one.inject('/cluster')).json()
  t.match(cluster, { here: 1, connections: 2 })
  t.same(cluster.users.sort(), ['ann', 'bob'])
  t.equal((await two.inject('/health')).statusCode, 200)

  await redis.stop()
  const { until } = await import('./helpers.ts')
  await until(async () => (await two.inject('/health')).statusCode === 503, 3000, 'not ready while Redis is away')
  await ann.close()
  await bob.close()
})

test('the cluster example: a chat session resumes on the other instance, without a second join notice', { skip: !redisAvailable() && 'redis-server is not installed' }, async (t) => {
  const { one, two } = await twoInstances(t, 'example-resume')

  const bob = await connect(two, '/ws?user=bob')
  const ann = await connect(one, '/ws?user=ann')
  const welcome = await ann.json()
  t.match(await chat(bob, 'joined'), { user: 'bob' })
  t.match(await chat(bob, 'joined'), { user: 'ann' })
  for (const conn of one.wsManager.getUserConnections('ann')) conn.socket.terminate()
  await ann.closed
  bob.send({ type: 'say', data: { room: 'lobby', text: 'missed it' } })
  t.match(await chat(bob, 'said'), { text: 'missed it' })

  const back = await connect(two, `/ws?user=ann&resume=${welcome.token as string}&offset=${welcome.offset as number}`)
  t.match(await back.json(), { type: 'welcome', clientId: welcome.clientId, resumed: true })
  t.match(await chat(back, 'said'), { text: 'missed it' })
  back.send({ type: 'say', data: { room: 'lobby', text: 'back, on two' } })
  const frames = []
  for (;;) {
    const frame = await bob.json()
    frames.push(frame.data)
    if (frame.data?.text === 'back, on two') break
  }
  t.notOk(frames.some(data => data?.type === 'joined'), 'no second join notice for ann')
  await back.close()
  await bob.close()
})

test('the cluster example: a room\'s user list is the cluster\'s, the same from both instances', { skip: !redisAvailable() && 'redis-server is not installed' }, async (t) => {
  const { one, two } = await twoInstances(t, 'example-users')

  const ann = await connect(one, '/ws?user=ann')
  t.same((await chat(ann, 'state')).users, { lobby: ['ann'] })
  const bob = await connect(two, '/ws?user=bob')
  t.same((await chat(bob, 'state')).users, { lobby: ['ann', 'bob'] }, 'bob, on two, sees ann, on one')
  t.same((await chat(ann, 'users')).users, ['ann', 'bob'], 'the list two sends for bob has ann in it')

  bob.send({ type: 'join', data: { room: 'dev' } })
  t.same((await chat(bob, 'state')).users.dev, ['bob'])
  ann.send({ type: 'join', data: { room: 'dev' } })
  t.same((await chat(ann, 'state')).users, { dev: ['ann', 'bob'], lobby: ['ann', 'bob'] })
  t.match(await chat(bob, 'users'), { room: 'dev', users: ['ann', 'bob'] }, 'the list one sends for ann has bob in it')

  await bob.close()
  const lists = [await chat(ann, 'users'), await chat(ann, 'users')].sort((x, y) => x.room.localeCompare(y.room))
  t.same(lists.map(l => [l.room, l.users]), [['dev', ['ann']], ['lobby', ['ann']]], 'bob gone: two sends the lists without him, with ann')
  await ann.close()
})
