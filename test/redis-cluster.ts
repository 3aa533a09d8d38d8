import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createServer } from 'node:net'
import { Redis } from 'ioredis'

/*
 * A private Redis Cluster for the tests: 3 masters and 3 replicas, each a redis-server
 * with `--cluster-enabled yes` on a free loopback port, joined by `redis-cli --cluster
 * create` (both from Debian's redis packages). A node can be killed (a failover follows:
 * its replica is promoted after `--cluster-node-timeout`) and the cluster stopped.
 */

const INSTALL = 'apt-get install -y redis-server redis-tools'
const NODE_TIMEOUT_MS = 1000

/** True when redis-server and redis-cli can be run here. Without them the cluster suites are skipped, loudly; on CI they fail. */
export function redisClusterAvailable (): boolean {
  const found = spawnSync('redis-server', ['--version']).status === 0 && spawnSync('redis-cli', ['--version']).status === 0
  if (!found) {
    const message = `redis-server or redis-cli not found: the Redis Cluster suites are SKIPPED. Install them with: ${INSTALL}`
    if (process.env.CI === 'true') throw new Error(`${message} (CI=true: failing instead)`)
    process.stderr.write(`\n*** ${message} ***\n\n`)
  }
  return found
}

async function freePorts (n: number): Promise<number[]> {
  const servers = await Promise.all(Array.from({ length: n }, async () => await new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve(server))
  })))
  const ports = servers.map(s => (s.address() as { port: number }).port)
  await Promise.all(servers.map(async s => await new Promise(resolve => s.close(resolve))))
  return ports
}

interface ClusterNode { port: number, child: ChildProcess }

export class RedisCluster {
  readonly nodes: ClusterNode[] = []
  #dir = mkdtempSync(join(tmpdir(), 'ws-redis-cluster-'))

  /** The nodes as ioredis' Cluster takes them. */
  get startupNodes (): Array<{ host: string, port: number }> {
    return this.nodes.map(n => ({ host: '127.0.0.1', port: n.port }))
  }

  async start (): Promise<this> {
    for (const port of await freePorts(6)) this.nodes.push({ port, child: await this.#spawn(port) })
    const create = spawnSync('redis-cli', ['--cluster', 'create', ...this.nodes.map(n => `127.0.0.1:${n.port}`), '--cluster-replicas', '1', '--cluster-yes'], { encoding: 'utf8', timeout: 30_000 })
    if (create.status !== 0) throw new Error(`redis-cli --cluster create failed: ${create.stdout}${create.stderr}`)
    await this.#settled()
    // and every replica has its master's data (a failover needs one that is in sync)
    const deadline = Date.now() + 20_000
    while (!this.nodes.every(n => {
      const info = spawnSync('redis-cli', ['-p', String(n.port), 'info', 'replication'], { encoding: 'utf8' }).stdout
      return info.includes('role:master') || info.includes('master_link_status:up')
    })) {
      if (Date.now() > deadline) throw new Error('the Redis Cluster replicas did not sync')
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    return this
  }

  async #spawn (port: number): Promise<ChildProcess> {
    const child = spawn('redis-server', [
      '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--cluster-enabled', 'yes', '--cluster-config-file', join(this.#dir, `nodes-${port}.conf`),
      '--cluster-node-timeout', String(NODE_TIMEOUT_MS), '--dir', this.#dir, '--loglevel', 'warning',
      // replicas sync at once (the default waits 5 s for more replicas to share a diskless sync)
      '--repl-diskless-sync-delay', '0'
    ], { stdio: ['ignore', 'pipe', 'pipe'] })
    await new Promise<void>((resolve, reject) => {
      let out = ''
      const ping = setInterval(() => {
        if (spawnSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8' }).stdout.trim() === 'PONG') {
          clearInterval(ping)
          child.removeAllListeners('exit')
          resolve()
        }
      }, 20)
      child.stdout!.on('data', (chunk: Buffer) => { out += chunk.toString() })
      child.once('exit', code => {
        clearInterval(ping)
        reject(new Error(`redis-server (cluster node ${port}) exited with ${String(code)}: ${out}`))
      })
    })
    return child
  }

  /** Waits until every live node says the cluster is ok and every slot is served. */
  async #settled (timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const ok = this.nodes.filter(n => n.child.exitCode === null && n.child.signalCode === null).every(n => {
        const info = spawnSync('redis-cli', ['-p', String(n.port), 'cluster', 'info'], { encoding: 'utf8' }).stdout
        return info.includes('cluster_state:ok') && info.includes('cluster_slots_ok:16384')
      })
      if (ok) return
      if (Date.now() > deadline) throw new Error('the Redis Cluster did not settle')
      await new Promise(resolve => setTimeout(resolve, 50))
    }
  }

  /** The ports of the masters now. */
  masters (): number[] {
    const out = spawnSync('redis-cli', ['-p', String(this.#live().port), 'cluster', 'nodes'], { encoding: 'utf8' }).stdout
    return out.split('\n').filter(line => /\bmaster\b/.test(line) && !/\bfail\b/.test(line)).map(line => Number(/:(\d+)@/.exec(line)![1]))
  }

  #live (): ClusterNode {
    return this.nodes.find(n => n.child.exitCode === null && n.child.signalCode === null)!
  }

  /**
   * Kills a node (SIGKILL, as a crash). With `failover` (the default) resolves when the
   * others marked it failed and serve every slot again (a master's replica promoted).
   */
  async kill (port: number, failover = true): Promise<void> {
    const node = this.nodes.find(n => n.port === port)!
    await new Promise(resolve => {
      node.child.once('exit', resolve)
      node.child.kill('SIGKILL')
    })
    if (!failover) return
    const deadline = Date.now() + 20_000
    for (;;) {
      const out = spawnSync('redis-cli', ['-p', String(this.#live().port), 'cluster', 'nodes'], { encoding: 'utf8' }).stdout
      const line = out.split('\n').find(l => l.includes(`:${port}@`))
      if (line !== undefined && /\bfail\b/.test(line)) break
      if (Date.now() > deadline) throw new Error(`node ${port} was not marked failed`)
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    await this.#settled()
  }

  /** A plain connection to one node (for inspection: KEYS, CLUSTER commands). */
  node (port: number): Redis {
    return new Redis({ port, host: '127.0.0.1', lazyConnect: false, maxRetriesPerRequest: 1 })
  }

  async stop (): Promise<void> {
    await Promise.all(this.nodes.map(async n => {
      if (n.child.exitCode !== null || n.child.signalCode !== null) return
      await new Promise(resolve => {
        n.child.once('exit', resolve)
        n.child.kill('SIGKILL')
      })
    }))
    rmSync(this.#dir, { recursive: true, force: true })
  }
}

/** Starts a private Redis Cluster for a test file and stops it when the file's tests are done. */
export async function startRedisCluster (t: { teardown (fn: () => unknown): void }): Promise<RedisCluster> {
  const cluster = new RedisCluster()
  t.teardown(() => cluster.stop())
  return await cluster.start()
}
