import { test } from 'tap'
import { MemoryAdapter, MemoryBus } from '../plugin.ts'
import { adapterContract } from './adapter-contract.ts'

test('the adapter contract: in-memory adapters joined by a bus', async (t) => {
  adapterContract(t, n => {
    const bus = new MemoryBus()
    return Array.from({ length: n }, () => new MemoryAdapter({ bus }))
  })
})
