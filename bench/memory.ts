// What the broker process's memory is made of: starts `serve` (development IAM in its own process, SQLite,
// plain HTTP) once per variant, reads its RSS idle after start, drives POST /token (startd IDTOKEN) with
// wrk, and reads its peak (VmHWM). Variants differ in Node options (in place of those on the bin's first
// line, which the default uses) or CTB_* settings; compare them, one at a time, against the default on the
// same machine in the same run. Variables the bin's first line sets (MALLOC_ARENA_MAX) apply unless a
// variant sets them. The default runs the built dist/ (BENCH_ENTRY=src: the TypeScript sources).
//
//   node bench/memory.ts [variant ...]      (default: all; BENCH_SECONDS, BENCH_CONNECTIONS as npm run bench;
//                                            BENCH_SECONDS=0: idle only)
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { GRANT_TYPE_TOKEN_EXCHANGE as TE, TOKEN_TYPE } from '../src/contract/token_exchange.ts'
import { freePort } from '../src/lib/free_port.ts'
import { load } from './http_load.ts'
import { BENCH_ENTRY, buildDist, startBroker, type BrokerEntry } from './processes.ts'
import { rssOf } from './rss.ts'
import { iamToken, setUpIam } from './token_http.ts'
import { haveWrk, wrkLoad } from './wrk_load.ts'

/** A variant: Node options in place of the bin's (`node`), CTB_* settings (`env`), or the sources. */
interface Variant { node?: string[]; env?: NodeJS.ProcessEnv; entry?: BrokerEntry }

const VARIANTS: Record<string, Variant> = {
  default: {},
  'TypeScript sources (src/)': { entry: 'src' },
  "V8's own young generation (no options)": { node: [] },
  'max-semi-space-size=8': { node: ['--max-semi-space-size=8'] },
  'max-semi-space-size=16': { node: ['--max-semi-space-size=16'] },
  'semi 4 + max-old-space-size=512': { node: ['--max-semi-space-size=4', '--max-old-space-size=512'] },
  'audit.sqlite.writer inline': { env: { CTB_AUDIT_SQLITE_WRITER: 'inline' } },
  // The bin's first line sets MALLOC_ARENA_MAX=2; glibc's own limit is 8 arenas per core.
  "glibc's arenas (MALLOC_ARENA_MAX=64)": { env: { MALLOC_ARENA_MAX: '64' } },
}

const connections = Number(process.env.BENCH_CONNECTIONS ?? 32)
const durationMs = Number(process.env.BENCH_SECONDS ?? 5) * 1000
const chosen = process.argv.length > 2 ? process.argv.slice(2) : Object.keys(VARIANTS)
if (BENCH_ENTRY === 'dist') buildDist()
const dir = mkdtempSync(join(tmpdir(), 'ctb-bench-mem-'))
const port = await freePort()
const setup = await setUpIam(dir, `https://localhost:${port}`)
const useWrk = await haveWrk()
let runs = 0
try {
  console.log(`${'variant'.padEnd(40)} ${'idle MB'.padStart(8)} ${'peak MB'.padStart(8)} ${'req/s'.padStart(8)} ${'p99 ms'.padStart(8)}`)
  for (const name of chosen) {
    const extra = VARIANTS[name]
    if (!extra) throw new Error(`unknown variant ${name}; known: ${Object.keys(VARIANTS).join(', ')}`)
    // A fresh data directory per variant: the same empty audit log to start from.
    const data = join(dir, `data-${++runs}`)
    const broker = await startBroker({ ...setup.brokerEnv(port, { CTB_TLS_MODE: 'off', CTB_DATA_DIR: data }), ...extra.env }, join(dir, 'broker.log'), 'broker', extra.entry, extra.node)
    try {
      await sleep(2000)
      const idle = rssOf(broker.pid).rssMb
      if (durationMs === 0) { console.log(`${name.padEnd(40)} ${String(idle).padStart(8)}`); continue }
      const robot = await iamToken(setup.iamOrigin, { grant_type: 'client_credentials', scope: 'wlcg' }, 'ctb-cloud-a-provisioner', 'ctb-cloud-a-provisioner-secret')
      const body = new URLSearchParams({ grant_type: TE, subject_token: robot, subject_token_type: TOKEN_TYPE.accessToken, role: 'startd', host: 'ep-17.cloud-a.example.org' }).toString()
      const o = { origin: `http://127.0.0.1:${port}`, path: '/token', method: 'POST' as const, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body, connections, durationMs }
      const r = useWrk ? await wrkLoad(o) : await load(o)
      console.log(`${name.padEnd(40)} ${String(idle).padStart(8)} ${String(rssOf(broker.pid).hwmMb).padStart(8)} ${String(r.rps).padStart(8)} ${String(r.p99ms).padStart(8)}`)
    } finally {
      await broker.stop()
    }
  }
} finally {
  await setup.iam.stop()
  rmSync(dir, { recursive: true, force: true })
}
