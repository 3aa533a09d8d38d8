import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'

/*
 * The bench's child processes run plain JavaScript: under the TypeScript loader a child
 * takes seconds to start and its RSS carries the compiler (hundreds of MB), which would
 * drown the per-connection memory figures. So the sources are transpiled once per run
 * (no type check: `npm run typecheck` does that) into node_modules/.cache, inside the
 * project so that packages resolve.
 */

const root = fileURLToPath(new URL('../../', import.meta.url))
export const buildDir = join(root, 'node_modules', '.cache', 'ws-stabilizer-bench')

const SOURCES = ['plugin.ts', 'lib', 'types/index.ts', 'test/bench', 'test/redis-server.ts']

function files (path: string): string[] {
  if (statSync(path).isFile()) return [path]
  return readdirSync(path).flatMap(name => files(join(path, name))).filter(f => f.endsWith('.ts') && !f.endsWith('.d.ts'))
}

/** Transpiles the sources the children need; returns the directory that mirrors the project. */
export function build (): string {
  rmSync(buildDir, { recursive: true, force: true })
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    verbatimModuleSyntax: true,
    rewriteRelativeImportExtensions: true,
    sourceMap: false
  }
  for (const source of SOURCES.flatMap(s => files(join(root, s)))) {
    const { outputText } = ts.transpileModule(readFileSync(source, 'utf8'), { compilerOptions: options, fileName: source })
    const target = join(buildDir, relative(root, source)).replace(/\.ts$/, '.js')
    mkdirSync(dirname(target), { recursive: true })
    writeFileSync(target, outputText)
  }
  writeFileSync(join(buildDir, 'package.json'), '{ "type": "module" }\n')
  return buildDir
}
