#!/usr/bin/env node
// Node 22.18+ and 24 run TypeScript directly; on 22.12-22.17 type stripping needs the flag, so re-exec.
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const main = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url))
if (process.features.typescript) {
  const cli = await import(main)
  await cli.main()
} else {
  const r = spawnSync(process.execPath, ['--experimental-strip-types', '--no-warnings', main, ...process.argv.slice(2)], { stdio: 'inherit' })
  process.exit(r.status ?? 1)
}
