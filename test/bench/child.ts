import { spawn, type ChildProcess } from 'node:child_process'

/*
 * A child process of a bench (a server, a load generator) and its IPC messages, read one
 * at a time. It runs the transpiled sources of build.ts under the hard open-files limit.
 */

const STEP_TIMEOUT = 60_000

export class Child<Command = unknown> {
  readonly process: ChildProcess
  #inbox: unknown[] = []
  #waiters: Array<(m: unknown) => void> = []
  #exited: Promise<void>

  /** `script`: a path under `dir` (the build's test/bench/), .ts or .js; `gc`: a server (--expose-gc, BENCH_PROF). */
  constructor (dir: string, script: string, args: string[], gc: boolean) {
    // BENCH_PROF=<dir>: a CPU profile of every server process (node --cpu-prof)
    const prof = gc && process.env.BENCH_PROF !== undefined ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROF}`] : []
    const node = [process.execPath, ...prof, ...(gc ? ['--expose-gc'] : []), `${dir}${script.replace(/\.ts$/, '.js')}`, ...args]
    // the fd limit: as many sockets as this machine lets one process have
    this.process = spawn('bash', ['-c', 'ulimit -n "$(ulimit -Hn)"; exec "$@"', 'bash', ...node], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    this.process.on('message', m => {
      const waiter = this.#waiters.shift()
      if (waiter !== undefined) waiter(m)
      else this.#inbox.push(m)
    })
    this.#exited = new Promise(resolve => this.process.once('exit', () => resolve()))
  }

  get pid (): number {
    return this.process.pid!
  }

  get exited (): Promise<void> {
    return this.#exited
  }

  next<T> (timeoutMs = STEP_TIMEOUT): Promise<T> {
    if (this.#inbox.length > 0) return Promise.resolve(this.#inbox.shift() as T)
    return new Promise((resolve, reject) => {
      const waiter = (m: unknown): void => {
        clearTimeout(timer)
        resolve(m as T)
      }
      const timer = setTimeout(() => {
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1)
        reject(new Error(`pid ${this.pid}: no answer within ${timeoutMs} ms`))
      }, timeoutMs)
      this.#waiters.push(waiter)
    })
  }

  send (command: Command): void {
    if (this.process.connected) this.process.send(command as object)
  }

  async ask<T> (command: Command, timeoutMs?: number): Promise<T> {
    this.send(command)
    return await this.next<T>(timeoutMs)
  }

  async stop (command: Command, graceMs = 5000): Promise<void> {
    if (this.process.exitCode === null) this.send(command)
    const timer = setTimeout(() => this.process.kill('SIGKILL'), graceMs)
    await this.#exited
    clearTimeout(timer)
  }

  kill (): void {
    if (this.process.exitCode === null) this.process.kill('SIGKILL')
  }
}
