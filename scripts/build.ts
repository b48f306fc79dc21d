// Builds dist/: the sources as plain JavaScript, for the npm package and the container image.
// An installed package lives under node_modules, where Node refuses to strip types, so the published
// bin must run JavaScript. tsc rewrites the `./x.ts` import specifiers to `./x.js`
// (rewriteRelativeImportExtensions); files tsc does not emit (the sbatch template) are copied as they are.
import { spawnSync } from 'node:child_process'
import { cpSync, readdirSync, rmSync } from 'node:fs'
import { join, relative } from 'node:path'

const root = join(import.meta.dirname, '..')
const src = join(root, 'src')
const dist = join(root, 'dist')

rmSync(dist, { recursive: true, force: true })
const tsc = spawnSync(join(root, 'node_modules/.bin/tsc'), ['-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' })
if (tsc.status !== 0) {
  process.stderr.write('build: tsc failed\n')
  process.exit(tsc.status ?? 1)
}
for (const entry of readdirSync(src, { recursive: true, withFileTypes: true })) {
  if (!entry.isFile() || entry.name.endsWith('.ts')) continue
  const from = join(entry.parentPath, entry.name)
  const to = join(dist, relative(src, from))
  cpSync(from, to)
  process.stdout.write(`build: copied ${relative(root, from)} -> ${relative(root, to)}\n`)
}
