#!/usr/bin/env node
// The sources are TypeScript that Node runs directly (type stripping); dependencies need Node >= 22.19.
// `npm start` and the package scripts use the project-local Node 24 that `npm ci` installs
// (node_modules/.bin/node); anything older gets one line, not a stack trace about `.ts`.
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const [major, minor] = process.versions.node.split('.').map(Number)
if (major < 22 || (major === 22 && minor < 19)) {
  process.stderr.write(`condor-token-broker: needs Node.js >= 22.19 (this is ${process.version}); run it as "npx condor-token-broker" or through npm scripts, which use the Node 24 that npm ci installs under node_modules\n`)
  process.exit(1)
}
const main = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url))
if (process.features.typescript) {
  const cli = await import(main)
  await cli.main()
} else {
  const r = spawnSync(process.execPath, ['--experimental-strip-types', '--no-warnings', main, ...process.argv.slice(2)], { stdio: 'inherit' })
  process.exit(r.status ?? 1)
}
