// How long the SQLite overview holds the event loop: fills a log (direct inserts of realistic rows, not a
// valid chain: the aggregates read columns only), then times the 24-hour and 30-day summaries and the
// longest gap between 1 ms timer ticks during each. Usage: npx node bench/overview_stall.ts [records] [file]
import { existsSync } from 'node:fs'
import { DatabaseSync } from 'node:sqlite'
import { auditOverview } from '../src/audit/overview.ts'
import { SqliteStore } from '../src/storage/sqlite_store.ts'

const N = Number(process.argv[2] ?? 1_000_000)
const FILE = process.argv[3] ?? `/tmp/overview_stall_${N}.db`
const DAY = 86400
const SPAN = 30 * DAY
const T0 = 1_800_000_000
const TYPES = ['token.issued', 'token.renewed', 'token.denied']

const fresh = !existsSync(FILE)
const store = new SqliteStore({ file: FILE, writer: 'inline' })
if (fresh) {
  const db = new DatabaseSync(FILE)
  const ins = db.prepare(`INSERT INTO audit_log (time, type, request_id, caller_sub, issued_sub, jti, role, site, token_kind, decision, exp, body, prev_hash, hash)
    VALUES (?, ?, ?, 'factory', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
  const hash = 'ab'.repeat(32)
  const pad = 'x'.repeat(400)
  const t = performance.now()
  db.exec('BEGIN')
  for (let i = 0; i < N; i++) {
    const type = TYPES[i % 20 === 0 ? 2 : i % 3 === 0 ? 1 : 0]!
    const deny = type === 'token.denied'
    ins.run(T0 + Math.floor((i * SPAN) / N), type, `req-${i}`, `pilot-${i % 10_000}@pool.example.org`, `jti-${i}`, `role-${i % 20}`, `SITE_${i % 50}`,
      i % 2 ? 'idtoken' : 'scitoken', deny ? 'deny' : 'allow', deny ? null : T0 + Math.floor((i * SPAN) / N) + 3600,
      JSON.stringify(deny ? { type, reason: `invalid_scope: ${i % 7}`, pad } : { type, pad }), hash, hash)
  }
  db.exec('COMMIT')
  db.close()
  console.log(`filled ${N} records in ${((performance.now() - t) / 1000).toFixed(1)} s`)
}

async function measure(label: string, q: Parameters<typeof auditOverview>[1]): Promise<void> {
  let last = performance.now()
  let worst = 0
  const tick = setInterval(() => { const t = performance.now(); worst = Math.max(worst, t - last); last = t }, 1)
  await new Promise((r) => setTimeout(r, 50))
  worst = 0
  last = performance.now()
  const t0 = performance.now()
  await auditOverview(store, q)
  const t1 = performance.now()
  worst = Math.max(worst, t1 - last)
  clearInterval(tick)
  console.log(`${label}: total ${(t1 - t0).toFixed(0)} ms, longest event-loop stall ${worst.toFixed(1)} ms`)
}

const now = T0 + SPAN - 1
for (let run = 0; run < 3; run++) {
  await measure('24 h per hour', { from: now - DAY, to: now, bucketSeconds: 3600, now, maxTokenLifetime: DAY })
  await measure('30 days per day', { from: now - SPAN + 1, to: now, bucketSeconds: DAY, now, maxTokenLifetime: DAY })
}
await store.close()
