import { test } from 'tap'
import { failover, skip, title } from './redis-cluster-failover.ts'

// sharded pub/sub; classic in redis-cluster-failover-classic.test.ts
test(title('sharded'), { skip }, async (t) => { await failover(t, 'sharded') })
