import { InvalidOptionsError } from './errors.ts'
import type { WsStabilizerOptions } from './options.ts'

/*
 * Options from `WS_*` environment variables, for apps configured by environment.
 * Explicit options win over the environment, field by field.
 */

type Kind = 'int' | 'bool' | 'string'
const VARIABLES: Record<string, [section: string | undefined, field: string, kind: Kind]> = {
  WS_HEARTBEAT_ENABLED: ['heartbeat', 'enabled', 'bool'],
  WS_HEARTBEAT_INTERVAL: ['heartbeat', 'interval', 'int'],
  WS_HEARTBEAT_TIMEOUT: ['heartbeat', 'timeout', 'int'],
  WS_HEARTBEAT_MODE: ['heartbeat', 'mode', 'string'],
  WS_MAX_CONNECTIONS: ['limits', 'maxConnections', 'int'],
  WS_MAX_CONNECTIONS_PER_USER: ['limits', 'maxConnectionsPerUser', 'int'],
  WS_MAX_MESSAGE_SIZE: ['limits', 'maxMessageSize', 'int'],
  WS_SHUTDOWN_TIMEOUT: ['shutdown', 'timeout', 'int'],
  WS_SHUTDOWN_CLOSE_CODE: ['shutdown', 'closeCode', 'int'],
  WS_SHUTDOWN_BATCH_SIZE: ['shutdown', 'batchSize', 'int'],
  WS_SHUTDOWN_BATCH_INTERVAL: ['shutdown', 'batchInterval', 'int'],
  WS_RECONNECT_SECRET: ['reconnect', 'secret', 'string'],
  WS_RECONNECT_TOKEN_TTL: ['reconnect', 'tokenTtl', 'int'],
  WS_CLOSE_TIMEOUT: [undefined, 'closeTimeout', 'int'],
  WS_COMPRESSION: [undefined, 'compression', 'string'],
  WS_METRICS: [undefined, 'metrics', 'bool'],
  WS_LOG_LEVEL: [undefined, 'logLevel', 'string']
}

/** The environment variables `optionsFromEnv` reads. */
export const ENV_VARIABLES = Object.keys(VARIABLES)

function parse (name: string, raw: string, kind: Kind): unknown {
  const value = raw.trim()
  if (kind === 'string') return value
  if (kind === 'int') {
    if (!/^\d+$/.test(value)) throw new InvalidOptionsError(`Expected environment variable ${name} to be a non-negative integer, got \`${raw}\``)
    return Number(value)
  }
  if (/^(true|1|yes|on)$/i.test(value)) return true
  if (/^(false|0|no|off)$/i.test(value)) return false
  throw new InvalidOptionsError(`Expected environment variable ${name} to be true or false, got \`${raw}\``)
}

/**
 * Reads the `WS_*` variables of `env` into plugin options and lays `explicit` over
 * them. The result is validated by `register` like any options.
 */
export function optionsFromEnv (env: Record<string, string | undefined> = process.env, explicit: WsStabilizerOptions = {}): WsStabilizerOptions {
  const fromEnv: Record<string, unknown> = {}
  for (const [name, [section, field, kind]] of Object.entries(VARIABLES)) {
    const raw = env[name]
    if (raw === undefined || raw === '') continue
    const value = parse(name, raw, kind)
    if (section === undefined) {
      fromEnv[field] = value
    } else {
      const target = (fromEnv[section] ??= {}) as Record<string, unknown>
      target[field] = value
    }
  }
  const merged: Record<string, unknown> = { ...fromEnv, ...explicit }
  for (const section of ['heartbeat', 'limits', 'shutdown', 'reconnect'] as const) {
    if (fromEnv[section] !== undefined && explicit[section] !== undefined) {
      merged[section] = { ...(fromEnv[section] as object), ...explicit[section] }
    }
  }
  return merged as WsStabilizerOptions
}
