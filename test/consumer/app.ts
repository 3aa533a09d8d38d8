import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, run, type Result, type RunOptions } from './process.ts'

/*
 * The package as it is shipped, in an app of its own: built, packed with `npm pack`, and
 * installed from the tarball with `npm install` and no lockfile, so npm resolves the newest
 * versions within our ranges of everything beside it, as a user's fresh install does.
 */

export const ROOT = fileURLToPath(new URL('../../', import.meta.url))

/** What the app installs beside the package, each at the range of our package.json. */
export const CONSUMER_DEPENDENCIES = [
  'fastify', '@fastify/websocket', 'ws', '@types/ws', 'ioredis', 'prom-client', '@fastify/jwt', 'tap', 'typescript', '@types/node'
]

const INSTALL_TIMEOUT = 5 * 60_000

export interface ConsumerApp {
  /** The app's folder: package.json, node_modules, and the files the checks write. */
  dir: string
  /** `npm ls --depth=0` of the app: the versions npm resolved. */
  versions: string
  /** The packed tarball's name. */
  tarball: string
  /** Runs a command in the app's folder. */
  run (command: string, args: string[], options?: Partial<RunOptions>): Promise<Result>
  /** Removes the temporary folder, unless KEEP_CONSUMER=1 (then says where it is). */
  remove (): string | undefined
}

interface Manifest {
  dependencies?: Record<string, string>
  devDependencies?: Record<string, string>
}

/** Our range of each consumer dependency. */
export function consumerRanges (manifest: Manifest): Record<string, string> {
  const ours = { ...manifest.devDependencies, ...manifest.dependencies }
  const ranges: Record<string, string> = {}
  for (const name of CONSUMER_DEPENDENCIES) {
    const range = ours[name]
    if (range === undefined) throw new Error(`package.json has no range for ${name}, which the consumer app installs`)
    ranges[name] = range
  }
  return ranges
}

async function must (result: Promise<Result>): Promise<Result> {
  const done = await result
  if (done.code !== 0) throw new Error(describe(done))
  return done
}

/** Builds and packs this repository and installs it into a new temporary app. */
export async function installConsumerApp (log: (line: string) => void): Promise<ConsumerApp> {
  const root = mkdtempSync(join(tmpdir(), 'fws-consumer-'))
  const dir = join(root, 'app')
  try {
    let started = Date.now()
    // a fresh build: nothing left in dist/ by an earlier one is packed
    rmSync(join(ROOT, 'dist'), { recursive: true, force: true })
    await must(run('npm', ['run', 'build'], { cwd: ROOT, timeout: 3 * 60_000 }))
    log(`built in ${Date.now() - started} ms`)
    started = Date.now()
    const packed = await must(run('npm', ['pack', '--json', '--pack-destination', root], { cwd: ROOT, timeout: 60_000 }))
    const [{ filename }] = JSON.parse(packed.stdout) as Array<{ filename: string }>
    log(`packed ${filename} in ${Date.now() - started} ms`)

    const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as Manifest
    mkdirSync(dir)
    writeFileSync(join(dir, 'package.json'), JSON.stringify({
      name: 'fastify-websocket-stabilizer-consumer',
      private: true,
      type: 'module',
      dependencies: { 'fastify-websocket-stabilizer': `file:../${filename}`, ...consumerRanges(manifest) }
    }, null, 2))
    started = Date.now()
    await must(run('npm', ['install', '--no-audit', '--no-fund', '--no-package-lock'], { cwd: dir, timeout: INSTALL_TIMEOUT }))
    log(`npm install (no lockfile) in ${Date.now() - started} ms`)
    const versions = await must(run('npm', ['ls', '--depth=0'], { cwd: dir, timeout: 60_000 }))
    return {
      dir,
      tarball: filename,
      versions: versions.stdout,
      run: async (command, args, options = {}) => await run(command, args, { cwd: dir, timeout: 20_000, ...options }),
      remove () {
        if (process.env.KEEP_CONSUMER === '1') return dir
        rmSync(root, { recursive: true, force: true })
        return undefined
      }
    }
  } catch (err) {
    if (process.env.KEEP_CONSUMER !== '1') rmSync(root, { recursive: true, force: true })
    throw err
  }
}
