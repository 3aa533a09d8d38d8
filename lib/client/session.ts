import type { WelcomeFrame } from './frames.ts'

/*
 * What a client keeps to come back as itself on a resume-protocol route: the reconnect
 * token of the last welcome and the offset of the last message received (the last one,
 * not the highest: after a resume on another instance the offsets are that instance's).
 */
export class Session {
  clientId: string | undefined = undefined
  token: string | undefined = undefined
  offset = 0

  welcome (frame: WelcomeFrame): void {
    this.clientId = frame.clientId
    this.token = frame.token
    this.offset = frame.offset
  }

  clear (): void {
    this.clientId = this.token = undefined
    this.offset = 0
  }

  /**
   * The address of the next attempt: `url` with, added to its own query, `v=2` and `w` (the
   * most frames it keeps unacknowledged, `window`) when the client numbers its frames (`sent`
   * is its count of the session's frames), and `resume`, `offset` (and `sent`) when there is
   * a token.
   */
  address (url: string, sent: number | undefined, window?: number): string {
    if (this.token === undefined && sent === undefined) return url
    const q = url.indexOf('?')
    const query = new URLSearchParams(q === -1 ? '' : url.slice(q + 1))
    if (sent !== undefined) {
      query.set('v', '2')
      if (window !== undefined) query.set('w', String(window))
    }
    if (this.token !== undefined) {
      query.set('resume', this.token)
      query.set('offset', String(this.offset))
      if (sent !== undefined) query.set('sent', String(sent))
    }
    return `${q === -1 ? url : url.slice(0, q)}?${query.toString()}`
  }
}
