import { test } from 'tap'
import { heartbeatStep, DEFAULT_HEARTBEAT } from '../lib/client/heartbeat.ts'

/* The client heartbeat's schedule on its own, as a pure function of the moments; the heartbeat against a server is in client.test.ts. */

test('heartbeat schedule: a ping after interval of quiet, one at a time, silence after timeout', async (t) => {
  const o = { ...DEFAULT_HEARTBEAT, interval: 100, timeout: 300 }
  t.same(heartbeatStep(o, 1000, 1000, 0), { silent: false, ping: false, wait: 100 }, 'just heard: look again when a ping is due')
  t.same(heartbeatStep(o, 1040, 1000, 0), { silent: false, ping: false, wait: 60 })
  t.same(heartbeatStep(o, 1100, 1000, 0), { silent: false, ping: true, wait: 200 }, 'quiet for interval: ping, then wait for the timeout')
  t.same(heartbeatStep(o, 1200, 1000, 1100), { silent: false, ping: false, wait: 100 }, 'a ping is unanswered: no second one')
  t.same(heartbeatStep(o, 1300, 1000, 1100), { silent: true, idle: 300 })
  t.same(heartbeatStep(o, 1300, 1250, 0), { silent: false, ping: false, wait: 50 }, 'traffic moved the moments on')
})
