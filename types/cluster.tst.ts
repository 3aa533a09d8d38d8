import { expect, test } from 'tstyche'
import Fastify from 'fastify'
import wsStabilizer, {
  type ClusterBroadcastOptions, type ClusterBroadcastResult, type ClusterMessage, type ClusterOp, ClusterTimeoutError
} from '../plugin.ts'

const app = Fastify()

test('cluster.timeout is a plugin option', () => {
  expect(app.register(wsStabilizer, { cluster: { timeout: 1000 } })).type.not.toRaiseError()
  expect(app.register).type.not.toBeCallableWith(wsStabilizer, { cluster: { timeout: '1s' } })
})

test('wsManager.cluster operations', async () => {
  const cluster = app.wsManager.cluster
  expect(await cluster.send('c', { a: 1 })).type.toBe<boolean>()
  expect(await cluster.send('c', Buffer.from('x'), { volatile: true, timeout: 100 })).type.toBe<boolean>()
  expect(await cluster.join('c', 'room')).type.toBe<boolean>()
  expect(await cluster.leave('c', 'room', { timeout: 100 })).type.toBe<boolean>()
  expect(await cluster.disconnect('c')).type.toBe<boolean>()
  expect(await cluster.disconnect('c', 4000, 'bye', { timeout: 100 })).type.toBe<boolean>()
  const result = await cluster.broadcast('x', { room: ['a', 'b'], exclude: new Set(['c']), volatile: true, timeout: 100 })
  expect(result).type.toBe<ClusterBroadcastResult>()
  expect(result.partial).type.toBe<boolean>()
  expect(result.instances).type.toBe<number>()
  expect(cluster.send).type.not.toBeCallableWith('c', 'x', { room: 'a' })
  expect(cluster.join).type.not.toBeCallableWith('c')
  expect(cluster.broadcast).type.not.toBeCallableWith('x', { timeout: '5s' })
  expect<ClusterBroadcastOptions>().type.toBeAssignableFrom({ room: 'a', exclude: 'b' })
})

test('the messages between instances and the timeout error', () => {
  expect<ClusterMessage>().type.toBeAssignableFrom({ type: 'op' as const, id: 1, from: 'i', op: { type: 'join' as const, clientId: 'c', room: 'r' } })
  expect<ClusterMessage>().type.toBeAssignableFrom({ type: 'result' as const, id: 1, to: 'i', from: 'j', counts: { total: 1, succeeded: 1, failed: 0 } })
  expect<ClusterOp>().type.not.toBeAssignableFrom({ type: 'user' as const, userId: 'u', data: Buffer.alloc(0), binary: false })
  expect(new ClusterTimeoutError('send()', 1, 2, 100).code).type.toBe<'FST_WS_CLUSTER_TIMEOUT'>()
})
