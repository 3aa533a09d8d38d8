import type { ManagedConnection } from '../connection.ts'
import { kHost, kUpstream } from '../symbols.ts'
import { write } from './write.ts'

/*
 * The one place the frames of a request/response exchange are written: the server's
 * requests to a client, the answers to the client's requests and the error frames that
 * carry an `id`. To a client that speaks protocol 2 on a replaying route they go through
 * the replay log, addressed to it alone, as message envelopes with an offset: one written in
 * the moment of a drop, or while the client is away, is replayed after its resume, so an
 * answer is never lost between the two. Elsewhere they are protocol frames, as in protocol 1
 * (not counted as the app's messages, not logged).
 */
export function writeExchange (conn: ManagedConnection, frame: Buffer): void {
  if (conn[kUpstream] !== undefined && conn.route.reconnect?.replay === true) conn[kHost].logged(conn, { data: frame, binary: false, json: true })
  else write(conn, { data: frame, binary: false }, true)
}
