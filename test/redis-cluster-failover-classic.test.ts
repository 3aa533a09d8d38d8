import { test } from 'tap'
import { failover, skip, title } from './redis-cluster-failover.ts'

// classic pub/sub; sharded in redis-cluster-failover.test.ts
test(title('classic'), { skip }, async (t) => { await failover(t, 'classic') })
