#!/usr/bin/env -S MALLOC_ARENA_MAX=2 node --max-semi-space-size=4 --no-allocation-site-pretenuring
// MALLOC_ARENA_MAX=2: glibc gives each thread that allocates (the main thread, the SQLite writer and
// checkpointer, libuv's pool, V8's helpers) an arena of its own, up to 8 per core, and each keeps the
// memory it once held. Two arenas: peak RSS under POST /token load (wrk, 32 connections, 10 s, quiet
// 2-core host) 166-173 MB instead of 177-186, idle 115-116 instead of 119; req/s the same within the spread.
// --max-semi-space-size=4: V8 sizes the young generation from the machine's memory (two 32 MiB semi-spaces
// on a 24 GiB host), and the broker's resident memory kept all of it. POST /token under load (wrk, 32
// connections, 8-10 s, quiet 2-core host): peak RSS 357-371 MB by default, 261-274 MB with 8 MiB, 254-261 MB
// with 4 MiB; idle 126 MB with 8 MiB, 116-119 MB with 4; throughput and p99 the same within the spread
// (docs/performance.md).
// --no-allocation-site-pretenuring: in about one run in four under POST /token load the process settled
// into promoting ~3.3 KB per request to the old generation instead of ~75 B (--trace-gc), with a peak RSS
// of 240-265 MB instead of 170-185; with V8's allocation-site pretenuring off (which allocates objects from
// sites it judges long-lived straight in the old generation), 0 runs in 12 did.
// The flags and the variable are here so that every way of running the command carries them: npm -g, systemd, the
// container, npm start.
// Two layouts: an installed package carries dist/ (JavaScript built at pack time: Node does not strip types
// under node_modules) and no src/; a checkout has src/ (TypeScript that Node >= 22.19 runs directly, so
// edits take effect without a build, even where a stale dist/ lies around). Dependencies need Node >= 22.19
// either way; anything older gets one line, not a stack trace.
import { spawn } from 'node:child_process'
import { constants as osConstants } from 'node:os'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const source = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url))
const checkout = existsSync(source)
const [major, minor] = process.versions.node.split('.').map(Number)
if (major < 22 || (major === 22 && minor < 19)) {
  const hint = checkout ? '; run it as "npx condor-token-broker" or through npm scripts, which use the Node 24 that npm ci installs under node_modules' : ''
  process.stderr.write(`condor-token-broker: needs Node.js >= 22.19 (this is ${process.version})${hint}\n`)
  process.exit(1)
}
if (!checkout) {
  const cli = await import('../dist/cli/main.js')
  await cli.main()
} else if (process.features.typescript) {
  const cli = await import(source)
  await cli.main()
} else {
  // The child gets this process's options (the heap sizing above), but not a debugger or watcher's: a
  // second inspector on the same port would fail, and the watcher is this process's job.
  const options = process.execArgv.filter((o) => !/^--(inspect|debug|watch)/.test(o))
  const child = spawn(process.execPath, [...options, '--experimental-strip-types', '--no-warnings', source, ...process.argv.slice(2)], { stdio: 'inherit' })
  // Whoever stops or reloads the command (systemd, a terminal, a harness) signals this process: pass it on
  // to the broker, which drains on SIGTERM/SIGINT and reloads on SIGHUP, and end as the broker ends.
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(signal, () => child.kill(signal))
  child.once('error', (err) => {
    process.stderr.write(`condor-token-broker: cannot start ${process.execPath}: ${err.message}\n`)
    process.exit(1)
  })
  child.once('exit', (code, signal) => process.exit(code ?? (signal ? 128 + (osConstants.signals[signal] ?? 0) : 1)))
}
