import { test } from 'tap'
import { Session } from '../lib/client/session.ts'

test('the resume address keeps the URL\'s own query', async (t) => {
  const s = new Session()
  t.equal(s.address('ws://h/ws?a=1'), 'ws://h/ws?a=1', 'no token: the URL as it is')
  s.welcome({ type: 'welcome', v: 1, clientId: 'c', token: 'tok-_.', offset: 41, resumed: false })
  t.equal(s.address('ws://h/ws'), 'ws://h/ws?resume=tok-_.&offset=41')
  t.equal(s.address('ws://h/ws?a=1&b=x%20y&resume=old'), 'ws://h/ws?a=1&b=x+y&resume=tok-_.&offset=41')
  t.equal(s.address('/relative?a=1'), '/relative?a=1&resume=tok-_.&offset=41', 'relative URLs too (browsers)')
  s.clear()
  t.same([s.clientId, s.token, s.offset], [undefined, undefined, 0])
})
