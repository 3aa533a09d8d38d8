import WebSocket from 'ws'

/*
 * The clients of `npm run bench:presence` (presence.ts), in a process of their own so that
 * their reading is not the server's CPU time nor the parent's timing: raw `ws` clients in
 * groups (by the prefix of their ids), that count the presence frames they get since the last
 * `mark`, with their bytes and the monotonic clock (process.hrtime, one clock for the whole
 * machine) of the first and last. Frames are told apart by their first bytes, never parsed: a
 * room's first state can be a map of 10,000 users, to each of 10,000 members.
 */

export type PresenceClientCommand =
  /** `count` clients `<prefix><i>` (user `u<prefix><i>`, metadata `{ name }` when given) on a server. */
  | { cmd: 'open', port: number, prefix: string, count: number, name?: string }
  | { cmd: 'mark' }
  /** Answers once `members` clients of the group got at least one presence frame since the mark. */
  | { cmd: 'wait', group: string, members: number }
  | { cmd: 'stats', group: string }
  | { cmd: 'exit' }

export interface GroupStats {
  /** Presence frames since the mark, and their bytes. */
  frames: number
  bytes: number
  states: number
  diffs: number
  /** Clients that got at least one, and the most one client got. */
  members: number
  mostPerMember: number
  /** hrtime (ns) of the first and the last frame. */
  first: number
  last: number
  /** The last frame's text (the shape of what members get), cut at 300 characters. */
  sample: string
}

interface Member { group: Group, epoch: number, frames: number }
interface Group { stats: GroupStats, waiter?: { members: number, done: () => void } }

process.on('disconnect', () => process.exit(0))

const STATE = Buffer.from('{"type":"presence.state"')
const DIFF = Buffer.from('{"type":"presence.diff"')
const sockets: WebSocket[] = []
const groups = new Map<string, Group>()
let epoch = 0

function fresh (): GroupStats {
  return { frames: 0, bytes: 0, states: 0, diffs: 0, members: 0, mostPerMember: 0, first: 0, last: 0, sample: '' }
}

function groupOf (name: string): Group {
  let group = groups.get(name)
  if (group === undefined) {
    group = { stats: fresh() }
    groups.set(name, group)
  }
  return group
}

function received (member: Member, data: Buffer): void {
  const state = data.subarray(0, STATE.length).equals(STATE)
  if (!state && !data.subarray(0, DIFF.length).equals(DIFF)) return
  const at = Number(process.hrtime.bigint())
  const stats = member.group.stats
  if (member.epoch !== epoch) {
    member.epoch = epoch
    member.frames = 0
    stats.members++
  }
  member.frames++
  stats.mostPerMember = Math.max(stats.mostPerMember, member.frames)
  stats.frames++
  stats.bytes += data.length
  if (state) stats.states++
  else stats.diffs++
  if (stats.first === 0) stats.first = at
  stats.last = at
  if (data.length <= 300 || stats.sample === '') stats.sample = data.subarray(0, 300).toString()
  const waiter = member.group.waiter
  if (waiter !== undefined && stats.members >= waiter.members) {
    member.group.waiter = undefined
    waiter.done()
  }
}

async function open (port: number, prefix: string, count: number, name: string | undefined): Promise<void> {
  const group = groupOf(prefix)
  for (let i = 0; i < count; i += 200) {
    await Promise.all(Array.from({ length: Math.min(200, count - i) }, async (_, j) => {
      const id = `${prefix}${i + j}`
      const ws = new WebSocket(`ws://127.0.0.1:${port}/ws?id=${id}&user=u${id}${name === undefined ? '' : `&name=${encodeURIComponent(name)}`}`)
      const member: Member = { group, epoch: -1, frames: 0 }
      ws.on('message', (data: Buffer) => received(member, data))
      sockets.push(ws)
      await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
    }))
  }
}

process.on('message', (m: PresenceClientCommand) => {
  const reply = (answer: object): void => { process.send!(answer) }
  if (m.cmd === 'open') {
    open(m.port, m.prefix, m.count, m.name).then(() => reply({ opened: m.count }), err => reply({ error: String(err) }))
  } else if (m.cmd === 'mark') {
    epoch++
    for (const group of groups.values()) group.stats = fresh()
    reply({})
  } else if (m.cmd === 'wait') {
    const group = groupOf(m.group)
    if (group.stats.members >= m.members) reply({})
    else group.waiter = { members: m.members, done: () => reply({}) }
  } else if (m.cmd === 'stats') {
    reply(groupOf(m.group).stats)
  } else {
    for (const ws of sockets) ws.terminate()
    process.exit(0)
  }
})
process.send!({ ready: true })
