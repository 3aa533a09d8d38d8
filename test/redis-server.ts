import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { createServer } from 'node:net'

/*
 * Private redis-server processes for the tests, on free loopback ports, so a test can
 * stop and restart one without touching anybody else's Redis.
 */

const INSTALL = 'apt-get install -y redis-server'

/** True when redis-server can be run here. Without it the Redis suites are skipped, loudly; on CI they fail. */
export function redisAvailable (): boolean {
  const found = spawnSync('redis-server', ['--version']).status === 0
  if (!found) {
    const message = `redis-server not found: the Redis adapter suites are SKIPPED. Install it with: ${INSTALL}`
    if (process.env.CI === 'true') throw new Error(`${message} (CI=true: failing instead)`)
    process.stderr.write(`\n*** ${message} ***\n\n`)
  }
  return found
}

async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

export class RedisServer {
  port = 0
  #child: ChildProcess | undefined = undefined

  /** The redis-server process while it runs (the bench reads its CPU time from /proc). */
  get pid (): number | undefined {
    return this.#child?.pid
  }

  get url (): string {
    return `redis://127.0.0.1:${this.port}`
  }

  /** Starts the server (on a new free port the first time, on the same port after a stop). */
  async start (): Promise<this> {
    if (this.port === 0) this.port = await freePort()
    const child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--loglevel', 'notice', '--enable-debug-command', 'yes'], { stdio: ['ignore', 'pipe', 'pipe'] })
    this.#child = child
    await new Promise<void>((resolve, reject) => {
      let out = ''
      const onData = (chunk: Buffer): void => {
        out += chunk.toString()
        if (out.includes('Ready to accept connections')) {
          child.stdout!.off('data', onData)
          resolve()
        }
      }
      child.stdout!.on('data', onData)
      child.once('exit', code => reject(new Error(`redis-server exited with ${String(code)}: ${out}`)))
    })
    child.removeAllListeners('exit')
    return this
  }

  /** Stops the server: SIGKILL, as a crash would, or SIGTERM. */
  async stop (signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.#child
    if (child === undefined) return
    this.#child = undefined
    if (child.exitCode !== null) return
    await new Promise(resolve => {
      child.once('exit', resolve)
      child.kill(signal)
    })
  }
}

/** Starts a private Redis for a test file and stops it when the file's tests are done. */
export async function startRedis (t: { teardown (fn: () => unknown): void }): Promise<RedisServer> {
  const server = await new RedisServer().start()
  t.teardown(() => server.stop())
  return server
}
