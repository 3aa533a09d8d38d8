import type { ManagedConnection } from '../connection.ts'
import { write } from './write.ts'

/*
 * The one place the frames of a request/response exchange are written: the server's
 * requests to a client, the answers to the client's requests and the error frames that
 * carry an `id`. They go out as protocol frames (not counted as the app's messages, not
 * logged for replay); a later protocol version can switch them to logged delivery here.
 */
export function writeExchange (conn: ManagedConnection, frame: Buffer): void {
  write(conn, { data: frame, binary: false }, true)
}
