import { test } from 'tap'
import { Session } from '../lib/client/session.ts'

test('the resume address keeps the URL\'s own query', async (t) => {
  const s = new Session()
  t.equal(s.address('ws://h/ws?a=1', undefined), 'ws://h/ws?a=1', 'no token: the URL as it is')
  s.welcome({ type: 'welcome', v: 1, clientId: 'c', token: 'tok-_.', offset: 41, resumed: false })
  t.equal(s.address('ws://h/ws', undefined), 'ws://h/ws?resume=tok-_.&offset=41')
  t.equal(s.address('ws://h/ws?a=1&b=x%20y&resume=old', undefined), 'ws://h/ws?a=1&b=x+y&resume=tok-_.&offset=41')
  t.equal(s.address('/relative?a=1', undefined), '/relative?a=1&resume=tok-_.&offset=41', 'relative URLs too (browsers)')
  s.clear()
  t.equal(s.address('ws://h/ws?a=1', 0), 'ws://h/ws?a=1&v=2', 'numbering: v=2 on every connection')
  s.welcome({ type: 'welcome', v: 2, clientId: 'c', token: 't', offset: 3, resumed: false, received: 0 })
  t.equal(s.address('ws://h/ws?v=1', 17), 'ws://h/ws?v=2&resume=t&offset=3&sent=17', 'and the count of frames sent on a resume')
  t.equal(s.address('ws://h/ws', 17, 50), 'ws://h/ws?v=2&w=50&resume=t&offset=3&sent=17', 'and the window it keeps, w')
  s.clear()
  t.same([s.clientId, s.token, s.offset], [undefined, undefined, 0])
})
