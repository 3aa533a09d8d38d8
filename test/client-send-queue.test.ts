import { test } from 'tap'
import { SendQueue } from '../lib/client/send-queue.ts'

test('the queue with maxQueueSize 0 keeps nothing', async (t) => {
  const q = new SendQueue(0)
  t.throws(() => q.push('x'), { code: 'WS_CLIENT_QUEUE_FULL' })
  t.equal(q.size, 0)
})
