import t, { test } from 'tap'
import { execFile } from 'node:child_process'
import { cp, mkdir, mkdtemp, readdir, readFile, rm, symlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

/*
 * The types as a consumer gets them: the declarations `npm run build` emits, laid out as an
 * installed package (node_modules/fastify-websocket-stabilizer with its package.json and
 * dist), and the strict TypeScript programs of test/consumer/ts compiled against them,
 * importing only the package. Before, `import type {} from '@fastify/websocket'` in
 * types/index.ts was elided from dist/types/index.d.ts, so @fastify/websocket's augmentation
 * of fastify never reached a consumer: `websocket: true` did not compile and the handler's
 * `request` was typed as a FastifyReply (the README Usage block gave 6 errors).
 * The other dependencies are the repository's own, linked, not installed.
 */

// a build and a strict compile: under a minute alone, longer on a busy machine
t.setTimeout(4 * 60_000)

const root = fileURLToPath(new URL('../..', import.meta.url))
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')

interface Run { code: number, output: string }

function run (args: string[], cwd: string): Promise<Run> {
  return new Promise(resolve => {
    execFile(process.execPath, [tsc, ...args], { cwd, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : Number((err as { code?: number }).code ?? 1), output: stdout + stderr })
    })
  })
}

test('test/consumer/ts/readme-usage.ts is the README Usage block', async (t) => {
  const readme = await readFile(join(root, 'README.md'), 'utf8')
  const usage = readme.slice(readme.indexOf('## Usage'), readme.indexOf('## Features'))
  const block = /```ts\n([\s\S]*?)```/.exec(usage)
  t.ok(block, 'the Usage section has a ts block')
  const file = await readFile(join(root, 'test', 'consumer', 'ts', 'readme-usage.ts'), 'utf8')
  t.equal(file.slice(file.indexOf('*/\n') + 3), block?.[1])
})

test('the published declarations compile in a strict consumer that imports only the package', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wss-published-types-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const modules = join(dir, 'node_modules')
  const pkg = join(modules, 'fastify-websocket-stabilizer')
  await mkdir(pkg, { recursive: true })

  const build = await run(['-p', join(root, 'tsconfig.build.json'), '--outDir', join(pkg, 'dist')], root)
  t.equal(build.code, 0, `the build succeeds\n${build.output}`)
  await cp(join(root, 'package.json'), join(pkg, 'package.json'))
  for (const name of await readdir(join(root, 'node_modules'))) {
    if (!name.startsWith('.')) await symlink(join(root, 'node_modules', name), join(modules, name))
  }
  await cp(join(root, 'test', 'consumer', 'ts'), join(dir, 'ts'), { recursive: true })

  const consumer = await run(['-p', join(dir, 'ts')], dir)
  t.equal(consumer.code, 0, 'the consumer programs compile')
  t.equal(consumer.output.trim(), '', 'without an error')

  // every declaration file, reachable from an entry point or not, stands on its own (stripInternal removes nothing another one names)
  const all = await run(['--noEmit', '--strict', '--skipLibCheck', 'false', '--module', 'NodeNext', '--moduleResolution', 'NodeNext', '--target', 'ES2022', '--types', 'node', '--allowImportingTsExtensions', ...await declarations(join(pkg, 'dist'))], dir)
  t.equal(all.output.trim(), '', 'every published .d.ts compiles')

  // the connection's own state is on symbols and stripped: users see its API, not its bookkeeping
  const connection = await readFile(join(pkg, 'dist', 'lib', 'connection.d.ts'), 'utf8')
  const shape = connection.slice(connection.indexOf('export declare class ManagedConnection'))
  const members = [...shape.matchAll(/^ {4}(?:readonly |get |set )?([[\w#]+)/gm)].map(m => m[1])
  t.ok(members.includes('send') && members.includes('rooms'), 'the members are read')
  for (const name of ['[k', 'slowSince', 'pingSentAt', 'buckets', 'inbound', 'held', 'socketError', 'connectedAtMs', 'dispatch', 'markClosing', 'markClosed', 'constructor', 'session']) {
    t.notOk(members.some(m => m.startsWith(name)), `ManagedConnection's published type has no ${name}`)
  }
  // `request(type, data)` is the public method (issue 14); the upgrade request it keeps stays internal
  t.ok(/^ {4}request\(type: string/m.test(shape), 'request() is published as a method')
  t.notOk(/^ {4}(?:readonly )?request\??: /m.test(shape), 'the upgrade request is not a published field')
})

async function declarations (dir: string): Promise<string[]> {
  const found: string[] = []
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && entry.name.endsWith('.d.ts')) found.push(join(entry.parentPath, entry.name))
  }
  return found
}
