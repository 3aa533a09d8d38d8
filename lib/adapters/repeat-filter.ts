/*
 * Cluster messages published twice are delivered once. ioredis sends the commands that were
 * in flight when its connection dropped again once it is back (`autoResendUnfulfilledCommands`,
 * on by default), so a PUBLISH that Redis carried out, and whose reply was lost with the
 * connection, goes out a second time. Every sender numbers its messages (the header's `s`,
 * cluster-codec.ts), and a receiver keeps, per sender, the highest number seen and the numbers
 * of a window below it. A number at or below the window's floor counts as seen: a sender's
 * messages travel in order over one connection, and a resend comes straight after the
 * reconnect, ahead of anything newer. The window is for a Redis Cluster, whose nodes may
 * relay a sender's classic PUBLISHes in a slightly different order.
 */

const WINDOW = 1024
/** Senders remembered: instances come and go with every restart; the oldest is forgotten first. */
const SENDERS = 1024

interface Sender { high: number, seen: Set<number> }

export class RepeatFilter {
  #senders = new Map<string, Sender>()
  /** Messages dropped as repeats. */
  repeats = 0

  /** True when `seq` of `origin` came before: the message is dropped. */
  repeated (origin: string, seq: number): boolean {
    let sender = this.#senders.get(origin)
    if (sender === undefined) {
      if (this.#senders.size >= SENDERS) this.#senders.delete(this.#senders.keys().next().value!)
      sender = { high: seq, seen: new Set([seq]) }
      this.#senders.set(origin, sender)
      return false
    }
    if (seq <= sender.high - WINDOW || sender.seen.has(seq)) {
      this.repeats++
      return true
    }
    sender.seen.add(seq)
    if (seq > sender.high) sender.high = seq
    // what fell below the window goes, a window's worth at a time
    if (sender.seen.size > 2 * WINDOW) for (const s of sender.seen) if (s <= sender.high - WINDOW) sender.seen.delete(s)
    return false
  }
}
