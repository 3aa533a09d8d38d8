import t, { type Test } from 'tap'
import { cpSync, existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { installConsumerApp, ROOT, type ConsumerApp } from './consumer/app.ts'
import { countCodeFences, extractBlocks, type Block } from './consumer/readme.ts'
import { describe, start, type Result } from './consumer/process.ts'
import { RedisServer, redisAvailable } from './redis-server.ts'

/*
 * The package as it is shipped: built, packed, installed from the tarball into a temporary
 * app by `npm install` with no lockfile (the newest fastify, @fastify/websocket, ws… within
 * our ranges, as a user's fresh install gets them). There, strict TypeScript consumers that
 * import only the package compile (test/consumer/ts), each entry point imports, and every
 * js and ts block of README.md runs as it is written (test/consumer/readme.ts says how a block is
 * marked as a fragment and which harness runs it). One app serves every check; it is
 * removed at the end unless KEEP_CONSUMER=1. Most of the time is npm install.
 */

t.setTimeout(8 * 60_000)

const README = readFileSync(join(ROOT, 'README.md'), 'utf8')
const HARNESSES = join(ROOT, 'test/consumer/harnesses')
const TS_CONSUMERS = join(ROOT, 'test/consumer/ts')
const PLACEHOLDER = /^\/\/ readme-fragment$/m
/** A README program's bound; its test runner's (tap, node --test) is longer. */
const PROGRAM_TIMEOUT = 20_000
const RUNNER_TIMEOUT = 60_000

const { blocks, problems } = extractBlocks(README)
t.test('README: every readme-test marker is well formed and marks a js or ts block', async t => {
  t.same(problems, [])
})

const started = Date.now()
const consumer = await installConsumerApp((line) => t.comment(line))
t.comment(`the consumer app, as npm resolved it today:\n${consumer.versions}`)
t.teardown(() => {
  const kept = consumer.remove()
  if (kept !== undefined) process.stderr.write(`KEEP_CONSUMER=1: the consumer app is kept in ${kept}\n`)
})

function failed (result: Result): string | undefined {
  return result.code === 0 ? undefined : describe(result)
}

t.test('every entry point imports from the installed package', async t => {
  writeFileSync(join(consumer.dir, 'entry-points.mjs'), `
import assert from 'node:assert/strict'
const plugin = await import('fastify-websocket-stabilizer')
assert.equal(typeof plugin.default, 'function')
assert.equal(plugin.default, plugin.wsStabilizer)
assert.equal(typeof plugin.optionsFromEnv, 'function')
assert.equal(typeof (await import('fastify-websocket-stabilizer/client')).StabilizerClient, 'function')
assert.equal(typeof (await import('fastify-websocket-stabilizer/redis')).RedisAdapter, 'function')
assert.equal(typeof (await import('fastify-websocket-stabilizer/redis')).RedisEmitter, 'function')
assert.equal(typeof (await import('fastify-websocket-stabilizer/testing')).wsTesting, 'function')
`)
  const result = await consumer.run('node', ['entry-points.mjs'])
  t.equal(failed(result), undefined)
})

t.test('strict TypeScript consumers compile against the published declarations', async t => {
  if (!existsSync(TS_CONSUMERS)) {
    t.fail(`${TS_CONSUMERS} is missing: it holds the TypeScript consumer programs and their tsconfig.json`)
    return
  }
  cpSync(TS_CONSUMERS, join(consumer.dir, 'ts'), { recursive: true })
  const result = await consumer.run('npx', ['tsc', '-p', 'ts'], { timeout: 3 * 60_000 })
  t.equal(failed(result), undefined, 'npx tsc -p ts, in the app')
})

t.test('README: every js and ts block runs as it is written', async t => {
  const env: Record<string, string> = { WS_RECONNECT_SECRET: 'readme-blocks-reconnect-secret' }
  let redis: RedisServer | undefined
  if (blocks.some(block => block.code.includes('REDIS_URL')) && redisAvailable()) {
    redis = await new RedisServer().start()
    t.teardown(() => redis?.stop())
    env.REDIS_URL = redis.url
  }
  let ran = 0
  let skipped = 0
  for (const block of blocks) {
    const name = `README.md:${block.line}, ${block.kind}${block.args.length > 0 ? ` ${block.args.join(' ')}` : ''}`
    const skip = block.kind === 'skip'
      ? `not run here: ${block.args.join(' ')}`
      : block.code.includes('REDIS_URL') && env.REDIS_URL === undefined ? 'needs redis-server (apt-get install -y redis-server)' : false
    if (skip !== false) skipped++
    await t.test(name, { skip }, async t => {
      ran++
      await runBlock(t, consumer, block, env)
    })
  }
  t.equal(ran + skipped, countCodeFences(README), 'every js and ts block of the README was run or explicitly skipped')
  t.comment(`consumer suite: ${Math.round((Date.now() - started) / 1000)} s from the build to the last block`)
})

async function runBlock (t: Test, consumer: ConsumerApp, block: Block, env: Record<string, string>): Promise<void> {
  const base = `readme-${block.line}`
  if (block.kind === 'program') {
    const entry = await saveProgram(t, consumer, base, block, block.code)
    t.equal(failed(await consumer.run('node', [entry], { env, timeout: PROGRAM_TIMEOUT })), undefined, 'runs to its end and exits 0')
  } else if (block.kind === 'fragment') {
    const harness = readHarness(block.args[0], true, isTs(block) ? 'mts' : 'mjs')
    const entry = await saveProgram(t, consumer, `${base}-${block.args[0]}`, block, harness.replace(PLACEHOLDER, () => block.code))
    t.equal(failed(await consumer.run('node', [entry], { env, timeout: PROGRAM_TIMEOUT })), undefined, `runs inside harnesses/${block.args[0]} and exits 0`)
  } else if (block.kind === 'file') {
    const [file, command, ...args] = block.args
    writeFileSync(join(consumer.dir, file), block.code)
    t.equal(failed(await consumer.run(command, args, { env, timeout: RUNNER_TIMEOUT })), undefined, `saved as ${file}, \`${[command, ...args].join(' ')}\` passes`)
  } else {
    // a server: it serves until stopped; the client harness checks it meanwhile
    const entry = await saveProgram(t, consumer, base, block, block.code)
    writeFileSync(join(consumer.dir, `${base}-${block.args[0]}.mjs`), readHarness(block.args[0], false))
    const server = start('node', [entry], { cwd: consumer.dir, env, timeout: PROGRAM_TIMEOUT + 5000 })
    const client = await consumer.run('node', [`${base}-${block.args[0]}.mjs`], { env, timeout: PROGRAM_TIMEOUT })
    const exited = server.child.exitCode !== null || server.child.signalCode !== null
    const served = await server.stop()
    t.equal(failed(client), undefined, `harnesses/${block.args[0]}.mjs passes against it`)
    t.notOk(exited, 'the server was still serving when the client was done')
    if (failed(client) !== undefined || exited) t.comment(describe(served))
  }
}

/** Node 22.18 and later run a .mts as it is (type stripping), as the README tells users to. */
const STRIPS_TYPES = (() => {
  const [major, minor] = process.versions.node.split('.').map(Number)
  return major > 22 || (major === 22 && minor >= 18)
})()

/**
 * Saves a block's program and returns what `node` runs. A js block is saved as .mjs. A ts
 * block is saved as .mts and compiled by the app's TypeScript, strict, as a user's project
 * would (a type error fails the block); Node runs the .mts itself where it strips types,
 * the compiled .mjs on older Node.
 */
async function saveProgram (t: Test, consumer: ConsumerApp, base: string, block: Block, code: string): Promise<string> {
  if (!isTs(block)) {
    writeFileSync(join(consumer.dir, `${base}.mjs`), code)
    return `${base}.mjs`
  }
  writeFileSync(join(consumer.dir, `${base}.mts`), code)
  const compiled = await consumer.run('npx', ['tsc', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--types', 'node', '--outDir', 'readme-ts', `${base}.mts`], { timeout: 2 * 60_000 })
  t.equal(failed(compiled), undefined, 'compiles with strict TypeScript')
  return STRIPS_TYPES ? `${base}.mts` : `readme-ts/${base}.mjs`
}

function isTs (block: Block): boolean {
  return block.lang === 'ts' || block.lang === 'typescript'
}

/** A harness: `<name>.mjs` for js blocks, `<name>.mts` (compiled with the block) for ts ones. */
function readHarness (name: string, fragment = true, ext = 'mjs'): string {
  const file = join(HARNESSES, `${name}.${ext}`)
  if (!existsSync(file)) throw new Error(`no harness ${file}`)
  const text = readFileSync(file, 'utf8')
  if (fragment && text.match(new RegExp(PLACEHOLDER, 'gm'))?.length !== 1) throw new Error(`${file} must have the line \`// readme-fragment\` once`)
  return text
}
