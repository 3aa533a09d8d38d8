/*
 * Tokens in URLs: browsers cannot set headers on a WebSocket, so credentials and resume
 * tokens often come in the query string, and every request log line would show them.
 * The plugin never logs them itself; these let the app's own request logs leave them out.
 */

/** The query parameters that carry tokens: the default `auth.queryParameter` and the resume token. */
export const TOKEN_PARAMETERS: readonly string[] = ['access_token', 'resume']

/** `url` with the values of `names` in its query string replaced by `[redacted]`. */
export function redactUrl (url: string, names: readonly string[] = TOKEN_PARAMETERS): string {
  const q = url.indexOf('?')
  if (q === -1) return url
  const parts = url.slice(q + 1).split('&').map(part => {
    const eq = part.indexOf('=')
    const name = decodeName(eq === -1 ? part : part.slice(0, eq))
    return eq !== -1 && names.includes(name) ? `${part.slice(0, eq)}=[redacted]` : part
  })
  return `${url.slice(0, q)}?${parts.join('&')}`
}

function decodeName (name: string): string {
  try {
    return decodeURIComponent(name.replaceAll('+', ' '))
  } catch {
    return name
  }
}

interface LoggedRequest {
  method: string
  url: string
  host?: string
  ip?: string
  headers?: Record<string, string | string[] | undefined>
  socket?: { remotePort?: number }
}

/**
 * A `req` serializer for Fastify's logger, like its own but with token parameters redacted:
 * `Fastify({ logger: { serializers: { req: tokenSafeRequestSerializer() } } })`.
 */
export function tokenSafeRequestSerializer (names: readonly string[] = TOKEN_PARAMETERS): (req: LoggedRequest) => Record<string, unknown> {
  return function req (req: LoggedRequest): Record<string, unknown> {
    return {
      method: req.method,
      url: redactUrl(req.url, names),
      version: req.headers?.['accept-version'],
      host: req.host,
      remoteAddress: req.ip,
      remotePort: req.socket?.remotePort
    }
  }
}
