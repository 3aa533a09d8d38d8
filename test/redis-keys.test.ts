import { test } from 'tap'
import { RedisKeys, shardChannels, slotOf } from '../lib/adapters/redis-keys.ts'

test('slots as Redis computes them (CRC16 XMODEM mod 16384)', async (t) => {
  t.equal(slotOf('123456789'), 12739, 'the check value of the Redis Cluster spec')
  t.equal(slotOf(''), 0)
})

test('the keys used together share a hash tag; the prefix never makes one', async (t) => {
  const keys = new RedisKeys('app')
  const tag = (key: string): string => /\{([^}]*)\}/.exec(key)![1]
  t.same(new Set([keys.instance('i1'), keys.presence('i1'), keys.users('i1'), keys.log('i1')].map(tag)), new Set(['i1']))
  t.equal(tag(keys.session('c1')), 'c1')
  t.same([tag(keys.nonce('n1')), tag(keys.pair('n1'))], ['n1', 'n1'])
  t.equal(keys.instances, 'app:instances', 'a key of its own')
})

test('sharded channels: one per shard, each in its own equal range of the slots', async (t) => {
  for (const shards of [1, 3, 16, 100]) {
    const channels = shardChannels('wss', shards)
    t.equal(new Set(channels).size, shards)
    channels.forEach((channel, n) => {
      const slot = slotOf(/\{([^}]*)\}/.exec(channel)![1])
      t.ok(slot >= Math.floor(n * 16384 / shards) && slot < Math.floor((n + 1) * 16384 / shards), `${channel}: slot ${slot}, shard ${n} of ${shards}`)
    })
  }
  t.equal(shardChannels('wss', 1)[0], 'wss:msg:{wss:0}', 'the plain name when it fits')
  // on three masters with equal ranges (redis-cli --cluster create): 16 shards fall 5, 5, 6
  const perMaster = [0, 0, 0]
  for (const channel of shardChannels('wss', 16)) perMaster[Math.min(2, Math.floor(slotOf(/\{([^}]*)\}/.exec(channel)![1]) / 5461))]++
  t.same(perMaster.sort(), [5, 5, 6])
})
