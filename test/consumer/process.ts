import { spawn, type ChildProcess } from 'node:child_process'

/*
 * Child processes of the consumer suite: each bounded (killed, with its own children, when
 * it runs too long) and given an environment without the test runner's and npm's own
 * variables, so that what runs in the temporary app runs as it would in a user's shell.
 */

export interface Result {
  command: string
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
  timedOut: boolean
  ms: number
}

export interface RunOptions {
  cwd: string
  /** Killed after this many ms (the result says `timedOut`). */
  timeout: number
  env?: Record<string, string>
}

/*
 * Not passed on: tap's (TAP_*, its coverage, its loaders), and npm's description of the run
 * we are in (npm_package_*, npm_lifecycle_*, the prefixes that point at this repository).
 * npm's other settings (registry, cache) stay.
 */
const DROPPED = /^(TAP|_TAPJS|NODE_V8_COVERAGE$|NODE_OPTIONS$|INIT_CWD$|npm_package_|npm_lifecycle_|npm_command$|npm_execpath$|npm_node_execpath$|npm_config_(local_|global_)?prefix$)/i

export function cleanEnv (extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !DROPPED.test(key)) env[key] = value
  }
  return { ...env, ...extra }
}

export interface Running {
  child: ChildProcess
  /** Resolves when it exits (or is killed at the bound). */
  done: Promise<Result>
  /** Stops it (SIGTERM, SIGKILL after 2 s) and resolves with its result. */
  stop (): Promise<Result>
}

/** Starts `command args` in its own process group. */
export function start (command: string, args: string[], options: RunOptions): Running {
  const started = Date.now()
  const child = spawn(command, args, { cwd: options.cwd, env: cleanEnv(options.env), detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout!.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
  child.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  let timedOut = false
  const killGroup = (signal: NodeJS.Signals): void => {
    try {
      process.kill(-child.pid!, signal)
    } catch {
      // the group is gone already
    }
  }
  const bound = setTimeout(() => {
    timedOut = true
    killGroup('SIGKILL')
  }, options.timeout)
  const done = new Promise<Result>((resolve) => {
    const finish = (code: number | null, signal: NodeJS.Signals | null): void => {
      clearTimeout(bound)
      // what it started (npx's node, a test runner's workers) goes with it
      killGroup('SIGKILL')
      resolve({ command: [command, ...args].join(' '), code, signal, stdout, stderr, timedOut, ms: Date.now() - started })
    }
    child.once('error', (err) => {
      stderr += String(err)
      finish(null, null)
    })
    child.once('close', finish)
  })
  return {
    child,
    done,
    async stop () {
      killGroup('SIGTERM')
      const hard = setTimeout(() => killGroup('SIGKILL'), 2000)
      const result = await done
      clearTimeout(hard)
      return result
    }
  }
}

/** Runs `command args` to its end (or the bound). */
export async function run (command: string, args: string[], options: RunOptions): Promise<Result> {
  return await start(command, args, options).done
}

/** A result as a failure message shows it: the command, how it ended, the end of its output. */
export function describe (result: Result): string {
  const how = result.timedOut ? 'killed after its time bound' : result.signal !== null ? `ended by ${result.signal}` : `exited with ${String(result.code)}`
  // the start (a compiler's first errors) and the end (a crash, a runner's summary)
  const cut = (text: string): string => text.length > 8000 ? `${text.slice(0, 5000)}\n…\n${text.slice(-3000)}` : text
  return `\`${result.command}\` ${how} after ${result.ms} ms\n--- stdout ---\n${cut(result.stdout)}\n--- stderr ---\n${cut(result.stderr)}`
}
