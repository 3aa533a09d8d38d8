import type { Cluster, Redis } from 'ioredis'

/*
 * Every key and channel name of the Redis adapter, in one place, laid out for Redis Cluster
 * (ARCHITECTURE.md, "Redis keys"). A key's hash tag (the text between its first `{` and the
 * next `}`) alone decides its slot, so the keys that one MULTI, one script or one multi-key
 * command uses together carry the same tag:
 * - per instance (`<id>`: its liveness, presence and users' counts, its replay log copy):
 *   `{<id>}`; the instance's heartbeat MULTI stays in one slot;
 * - per session: `{<clientId>}`; per token nonce: `{<nonce>}` (a nonce's claim and its pair);
 * - `<prefix>:instances` alone, never written in a MULTI with another key.
 * The prefix comes first and carries no braces (checked with the options), so it never
 * holds a tag of its own. What reads many instances' keys at once goes through `perKey`:
 * one pipeline on a single Redis, one command per key on a Cluster (ioredis refuses a
 * pipeline whose keys span slots; its auto-pipelining groups them per node instead).
 */

/** An ioredis client: one Redis, or a Redis Cluster. */
export type RedisClient = Redis | Cluster

export function isCluster (redis: RedisClient): redis is Cluster {
  return (redis as Cluster).isCluster === true
}

export class RedisKeys {
  readonly prefix: string

  constructor (prefix: string) {
    this.prefix = prefix
  }

  /** An instance's liveness: there while it lives (`presenceTtl`). */
  instance (id: string): string {
    return `${this.prefix}:instance:{${id}}`
  }

  /** An instance's connections: hash clientId → entry. */
  presence (id: string): string {
    return `${this.prefix}:presence:{${id}}`
  }

  /** An instance's users: hash userId → connection count. */
  users (id: string): string {
    return `${this.prefix}:users:{${id}}`
  }

  /** The copy of a replay log (named after its instance), a stream. */
  log (stream: string): string {
    return `${this.prefix}:log:{${stream}}`
  }

  /** The set of instance ids. */
  get instances (): string {
    return `${this.prefix}:instances`
  }

  /** A session that went away, or its fence. */
  session (clientId: string): string {
    return `${this.prefix}:session:{${clientId}}`
  }

  /** A used token nonce. */
  nonce (nonce: string): string {
    return `${this.prefix}:nonce:{${nonce}}`
  }

  /** A released nonce's partner. */
  pair (nonce: string): string {
    return `${this.prefix}:pair:{${nonce}}`
  }
}

/** The one channel of classic pub/sub. */
export function messageChannel (prefix: string): string {
  return `${prefix}:msg`
}

/**
 * The channels of sharded pub/sub, one per shard, `<prefix>:msg:{<prefix>:<n>}`, or with a
 * suffix (`<prefix>:<n>.<k>`, the first k that does it) so that shard n's slot is in the n-th
 * of `shards` equal ranges of the 16384 slots: the shards spread evenly over masters that hold
 * equal ranges (16 plain names fell 3, 5 and 8 on three masters).
 */
export function shardChannels (prefix: string, shards: number): string[] {
  return Array.from({ length: shards }, (_, n) => {
    const low = Math.floor(n * SLOTS / shards)
    const high = Math.floor((n + 1) * SLOTS / shards)
    let tag = `${prefix}:${n}`
    for (let k = 0; !inRange(slotOf(tag), low, high); k++) tag = `${prefix}:${n}.${k}`
    return `${prefix}:msg:{${tag}}`
  })
}

const SLOTS = 16384

function inRange (slot: number, low: number, high: number): boolean {
  return slot >= low && slot < high
}

/** The Redis Cluster slot of a hash tag's text: CRC16 (XMODEM) mod 16384, as Redis computes it. */
export function slotOf (text: string): number {
  let crc = 0
  for (const byte of Buffer.from(text)) {
    crc ^= byte << 8
    for (let i = 0; i < 8; i++) crc = (crc & 0x8000) !== 0 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff
  }
  return crc % SLOTS
}

/** A command and its arguments, as `pipeline([...])` takes them. */
export type Command = [name: string, ...args: Array<string | number>]

/**
 * Runs commands on many keys and answers in order: one pipeline on a single Redis (an
 * error stands where its answer would, as before); one command each on a Cluster, where
 * the keys are in many slots (a failed command then rejects the whole).
 */
export async function perKey (redis: RedisClient, commands: Command[]): Promise<unknown[]> {
  if (isCluster(redis)) return await Promise.all(commands.map(async ([name, ...args]) => await redis.call(name, ...args)))
  return (await redis.pipeline(commands).exec())!.map(([, value]) => value)
}
