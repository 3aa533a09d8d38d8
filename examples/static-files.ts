/*
 * Serving the chat page and the compiled client without @fastify/static: every file that
 * may be served is listed once, when the server is built, and gets a route of its own.
 * A request for anything else (`/client/../../package.json`, `/%2e%2e/…`) matches no route
 * and gets a 404, so there is no path to traverse.
 */
import type { FastifyInstance } from 'fastify'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { dirname, extname, join, relative, resolve, sep } from 'node:path'

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon'
}

/** URL path → file on disk. */
export type FileMap = Map<string, string>

/** The first of `dirs` that holds `marker`, or undefined. */
export function findDir (dirs: string[], marker: string): string | undefined {
  return dirs.find(dir => existsSync(join(dir, marker)))
}

/** The files of a page folder (not its subfolders) with a known type: `index.html` at `/`, the others by name. */
export function pageFiles (dir: string): FileMap {
  const files: FileMap = new Map()
  for (const name of readdirSync(dir).sort()) {
    const file = join(dir, name)
    if (TYPES[extname(name)] === undefined || !statSync(file).isFile()) continue
    files.set(name === 'index.html' ? '/' : `/${encodeURIComponent(name)}`, file)
  }
  return files
}

const IMPORT = /\b(?:from|import)\s*(?:\(\s*)?['"](\.{1,2}\/[^'"]+)['"]/g

/**
 * An ES module and the modules it imports by relative path, transitively, each at its path
 * under `root`: with `root` = dist/lib and `entry` = client/index.js the page imports
 * `/client/index.js`, whose `../close-codes.js` is then `/close-codes.js`. Nothing outside
 * that import graph is served. Throws when an import leaves `root` or is missing.
 */
export function moduleFiles (root: string, entry: string): FileMap {
  const files: FileMap = new Map()
  const pending = [resolve(root, entry)]
  for (let file = pending.pop(); file !== undefined; file = pending.pop()) {
    const path = relative(root, file)
    if (path.startsWith('..') || path.startsWith(sep)) throw new Error(`${file} is outside ${root}`)
    const url = `/${path.split(sep).join('/')}`
    if (files.has(url)) continue
    files.set(url, file)
    for (const [, specifier] of readFileSync(file, 'utf8').matchAll(IMPORT)) pending.push(resolve(dirname(file), specifier))
  }
  return files
}

/** A GET route per file, read on each request (an edited page is served as it is now). */
export function serveFiles (app: FastifyInstance, files: FileMap): void {
  for (const [url, file] of files) {
    const type = TYPES[extname(file)] ?? 'application/octet-stream'
    app.get(url, async (_request, reply) => {
      const body = await readFile(file)
      return await reply.type(type).header('cache-control', 'no-cache').header('x-content-type-options', 'nosniff').send(body)
    })
  }
}
