import type { Static, TSchema } from '@sinclair/typebox'
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler'
import type { RawData } from 'ws'
import type { FastifyRequest } from 'fastify'
import type { Bucket, ManagedConnection } from '../connection.ts'
import type { InboundRejection } from '../stats.ts'
import { InvalidRouteOptionsError } from '../errors.ts'
import { takeBucket } from './rate-limit.ts'

/*
 * Typed inbound messages: a route's `messages` maps each `type` of a `{ type, id?, data }`
 * envelope to an optional TypeBox schema for `data`, an optional rate limit, and a
 * handler that gets the validated data. Schemas are compiled once, when the route is added.
 * Whatever goes wrong gets an error frame with a stable code; the handler's answer, when
 * the message had an `id`, goes back as `{ type: "<type>.result", id, data }` (`data: null`
 * when the handler returned nothing).
 */

export interface MessageContext {
  conn: ManagedConnection
  /** The upgrade request. */
  request: FastifyRequest
  /** The envelope's id, when the client wants an answer. */
  id: string | number | undefined
  /**
   * True when the message may have been handled before: a numbered client (protocol 2) resumed
   * from the snapshot of an instance that crashed (PROTOCOL.md). Otherwise every message comes once.
   */
  redelivered: boolean
}

/** The type of a message's `data`: what its schema says, or unknown without one. */
export type DataOf<S> = S extends TSchema ? Static<S> : unknown

export interface MessageDefinition<S = TSchema, R = unknown> {
  /** The schema of `data`; without one any `data` passes. */
  schema?: S
  /** Messages of this type per second per connection (a token bucket of `burst`, default the rate). */
  rateLimit?: { messagesPerSecond: number, burst?: number }
  /** Its answer (awaited) goes back to a message with an `id`. */
  handler: (data: DataOf<S>, context: MessageContext) => R
}

export type MessageDefinitions = Record<string, MessageDefinition<any>>

/**
 * Keeps each handler's `data` typed by its schema, and what it answers:
 * `messages: defineMessages({ chat: { schema, handler } })`. `RequestsOf<typeof messages>`
 * is the type the client's `request` takes.
 */
export function defineMessages<M extends Record<string, unknown>, R extends Record<string, unknown>> (
  definitions: { [K in keyof M]: { schema?: M[K], rateLimit?: unknown, handler?: unknown } } & { [K in keyof R]: MessageDefinition<K extends keyof M ? M[K] : never, R[K]> }
): { [K in keyof M & keyof R]: MessageDefinition<M[K], R[K]> } {
  return definitions as never
}

/** What a handler's answer is on the wire: its awaited value, `null` when it returns nothing. */
export type AnswerOf<R> = Awaited<R> extends infer A ? (A extends undefined | void ? null : A) : never

/**
 * The requests a route's messages answer, for the client's `request`: each type's `data`
 * (the schema's Static) and `answer`. Import it with `import type` in client code.
 */
export type RequestsOf<D> = {
  [K in keyof D & string]: D[K] extends { handler: (data: infer Data, context: MessageContext) => infer R } ? { data: Data, answer: AnswerOf<R> } : never
}

interface Compiled {
  type: string
  check: TypeCheck<TSchema> | undefined
  rateLimit: { messagesPerSecond: number, burst: number } | undefined
  handler: MessageDefinition['handler']
}

/** What the router reports back to the connection's manager. */
export interface RouterEvents {
  rejected (conn: ManagedConnection, code: InboundRejection, message: string, id: unknown): void
  failed (conn: ManagedConnection, err: unknown, id: unknown): void
  answer (conn: ManagedConnection, frame: string): void
}

export class MessageRouter {
  #types = new Map<string, Compiled>()

  constructor (types: Compiled[]) {
    for (const type of types) this.#types.set(type.type, type)
  }

  /** Routes one inbound message; `buckets` holds the connection's per-type rate limits. */
  route (conn: ManagedConnection, request: FastifyRequest, data: RawData, isBinary: boolean, events: RouterEvents, buckets: () => Map<string, Bucket>, redelivered = false): void {
    if (isBinary) {
      events.rejected(conn, 'BINARY_NOT_ALLOWED', 'this route takes JSON text messages', undefined)
      return
    }
    let envelope: { type?: unknown, id?: unknown, data?: unknown }
    try {
      envelope = JSON.parse(data.toString())
    } catch {
      events.rejected(conn, 'INVALID_JSON', 'the message is not JSON', undefined)
      return
    }
    if (typeof envelope !== 'object' || envelope === null || typeof envelope.type !== 'string') {
      events.rejected(conn, 'INVALID_MESSAGE', 'expected { type: string, id?, data? }', undefined)
      return
    }
    const id = typeof envelope.id === 'string' || typeof envelope.id === 'number' ? envelope.id : undefined
    const type = this.#types.get(envelope.type)
    if (type === undefined) {
      events.rejected(conn, 'UNKNOWN_TYPE', `unknown message type ${JSON.stringify(envelope.type).slice(0, 64)}`, id)
      return
    }
    if (type.rateLimit !== undefined) {
      const all = buckets()
      let bucket = all.get(type.type)
      if (bucket === undefined) all.set(type.type, bucket = { tokens: 0, refilledAt: 0 })
      if (!takeBucket(bucket, type.rateLimit.messagesPerSecond, type.rateLimit.burst, Date.now())) {
        events.rejected(conn, 'RATE_LIMITED', `more than ${type.rateLimit.messagesPerSecond} ${type.type} messages per second`, id)
        return
      }
    }
    if (type.check !== undefined) {
      const problem = validate(type.check, envelope.data)
      if (problem !== undefined) {
        events.rejected(conn, 'VALIDATION_FAILED', problem, id)
        return
      }
    }
    let result: unknown
    try {
      result = type.handler(envelope.data as never, { conn, request, id, redelivered })
    } catch (err) {
      events.failed(conn, err, id)
      return
    }
    if (result instanceof Promise) {
      result.then(value => answer(conn, type.type, id, value, events), (err: unknown) => events.failed(conn, err, id))
    } else {
      answer(conn, type.type, id, result, events)
    }
  }
}

/** Why `data` does not fit, or undefined. Data nested deeper than a recursive schema's check can go (its stack) does not fit either. */
function validate (check: TypeCheck<TSchema>, data: unknown): string | undefined {
  try {
    if (check.Check(data)) return undefined
    const first = check.Errors(data).First()!
    return `data${first.path.replaceAll('/', '.')}: ${first.message}`.slice(0, 200)
  } catch {
    return 'data: too deeply nested to validate'
  }
}

/** Sends the handler's answer; one that cannot be serialized (a BigInt, a cycle, too deep) is a handler failure. */
function answer (conn: ManagedConnection, type: string, id: string | number | undefined, value: unknown, events: RouterEvents): void {
  // to a closed connection too: a protocol 2 client gets it replayed after its resume (outbound/exchange.ts)
  if (id === undefined) return
  let frame: string
  try {
    // a handler that returns nothing still answers a message with an id: data null
    frame = JSON.stringify({ type: `${type}.result`, id, data: value ?? null })
  } catch (err) {
    events.failed(conn, err, id)
    return
  }
  events.answer(conn, frame)
}

/** Compiles a route's message definitions once; a bad one is a route error at startup. */
export function compileRouter (url: string, definitions: MessageDefinitions): MessageRouter {
  if (typeof definitions !== 'object' || definitions === null) throw new InvalidRouteOptionsError(url, 'Expected `config.ws.messages` to be an object of { schema?, rateLimit?, handler }')
  const types: Compiled[] = []
  for (const [type, definition] of Object.entries(definitions)) {
    if (typeof definition?.handler !== 'function') throw new InvalidRouteOptionsError(url, `Expected \`config.ws.messages.${type}.handler\` to be a function`)
    const rate = definition.rateLimit
    if (rate !== undefined && !(rate.messagesPerSecond > 0)) throw new InvalidRouteOptionsError(url, `Expected \`config.ws.messages.${type}.rateLimit.messagesPerSecond\` to be a positive number`)
    types.push({
      type,
      check: definition.schema === undefined ? undefined : TypeCompiler.Compile(definition.schema),
      rateLimit: rate === undefined ? undefined : { messagesPerSecond: rate.messagesPerSecond, burst: rate.burst ?? Math.max(1, rate.messagesPerSecond) },
      handler: definition.handler
    })
  }
  return new MessageRouter(types)
}
