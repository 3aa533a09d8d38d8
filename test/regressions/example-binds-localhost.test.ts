import { test } from 'tap'
import { spawn } from 'node:child_process'
import { request } from 'node:http'
import { networkInterfaces } from 'node:os'
import { listenOptions } from '../../examples/server.ts'

/*
 * The chat example listens on 127.0.0.1 unless HOST says otherwise: with CHAT_DROP=1 it
 * serves `POST /drop`, which cuts every connection, and that must not be reachable from
 * the network by default (before, it bound 0.0.0.0).
 */

const execArgv = process.execArgv.filter(arg => arg.includes('@tapjs/typescript') || arg === '--enable-source-maps')
const external = Object.values(networkInterfaces()).flat().find(i => i !== undefined && i.family === 'IPv4' && !i.internal)?.address

async function drop (host: string, port: number): Promise<number | string> {
  return await new Promise(resolve => {
    const req = request({ host, port, method: 'POST', path: '/drop' }, res => { res.resume(); resolve(res.statusCode!) })
    req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code!))
    req.end()
  })
}

test('listenOptions: 127.0.0.1 by default, HOST and PORT when given', async (t) => {
  t.same(listenOptions({}, 3000), { port: 3000, host: '127.0.0.1' })
  t.same(listenOptions({ HOST: '0.0.0.0', PORT: '8080' }, 3000), { port: 8080, host: '0.0.0.0' })
})

test('`CHAT_DROP=1 npm start`: /drop answers on the loopback only', { skip: external === undefined && 'no non-loopback IPv4 address here' }, async (t) => {
  const { HOST: _host, ...env } = process.env
  const child = spawn(process.execPath, [...execArgv, 'examples/server.ts'], { env: { ...env, PORT: '0', CHAT_DROP: '1' }, stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { child.kill('SIGKILL') })
  const port = await new Promise<number>((resolve, reject) => {
    let out = ''
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString()
      const found = /Server listening at http:\/\/[^:]+:(\d+)/.exec(out)
      if (found !== null) resolve(Number(found[1]))
    })
    child.once('exit', code => reject(new Error(`the example exited with ${String(code)}: ${out}`)))
  })
  t.equal(await drop('127.0.0.1', port), 200, 'on the loopback')
  t.equal(await drop(external!, port), 'ECONNREFUSED', `not on ${external!}`)
})
