// Audit store benchmark: records/s with group commit on SQLite and PostgreSQL, issueToken
// throughput with the audit write on the path, and GET /v1/audit latency for filtered queries over a
// large log (default 1,000,000 records; target < 50 ms).
//
//   node bench/audit.ts [--records N] [--seconds S] [--concurrency C] [--no-pg]
//
// PostgreSQL runs on a throwaway local server (test/support/postgres.ts) when the Debian package
// `postgresql` is installed. Everything stays on loopback and in a temp dir that is removed afterwards.
import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Hono } from 'hono'
import type { AuditEvent } from '../src/audit/audit_log.ts'
import { loadConfig } from '../src/config.ts'
import { adminAuth, bootstrapTokenAuthenticator } from '../src/http/middleware/admin_auth.ts'
import { auditRoutes } from '../src/http/routes/audit.ts'
import { issueDepsFrom, issueToken, type AllowedDecision } from '../src/issuance/issue.ts'
import { ensureAndLoadKeys } from '../src/keys/signing_keys.ts'
import { systemClock } from '../src/lib/clock.ts'
import type { BrokerStore } from '../src/storage/chained_store.ts'
import { PostgresStore } from '../src/storage/postgres_store.ts'
import { SqliteStore } from '../src/storage/sqlite_store.ts'
import { findPostgresBin, startPostgres, type TestPostgres } from '../test/support/postgres.ts'

const { values: args } = parseArgs({
  options: {
    records: { type: 'string', default: '1000000' },
    seconds: { type: 'string', default: '5' },
    concurrency: { type: 'string', default: '256' },
    'no-pg': { type: 'boolean', default: false },
  },
})
const RECORDS = Number(args.records)
const SECONDS = Number(args.seconds)
const CONCURRENCY = Number(args.concurrency)
const T0 = 1_790_000_000
const dir = mkdtempSync(join(tmpdir(), 'ctb-bench-audit-'))

function event(i: number): AuditEvent {
  const deny = i % 20 === 0
  return {
    type: deny ? 'token.denied' : 'token.issued',
    // ~2.6 s apart: 1M records span a month.
    time: T0 + Math.floor(i * 2.6),
    requestId: `req-${i}`,
    caller: { iss: 'https://iam.example.org/', sub: `caller-${i % 500}`, client_id: 'factory', groups: ['/vo/pilots'] },
    clientAddress: '192.0.2.10',
    role: `role-${i % 20}`,
    tokenKind: 'idtoken',
    issuedSub: `pilot-${i % 10_000}@pilots.pool.example.org`,
    jti: createHash('md5').update(String(i)).digest('hex'),
    scopes: ['ADVERTISE_STARTD', 'ADVERTISE_MASTER', 'READ'],
    audience: [],
    exp: T0 + Math.floor(i * 2.6) + 7200,
    tokenSha256: createHash('sha256').update(String(i)).digest('hex'),
    policyRule: `rule-${i % 20}`,
    decision: deny ? 'deny' : 'allow',
    ...(deny ? { reason: 'invalid_scope: WRITE not allowed' } : {}),
    site: `SITE_${i % 50}`,
  }
}

/** Closed loop: CONCURRENCY writers, each awaiting its commit before the next record. */
async function recordRate(store: BrokerStore, seconds: number, concurrency: number, start: number): Promise<{ rate: number; batch: number }> {
  const before = store.commitStats()
  let i = start
  const end = performance.now() + seconds * 1000
  const t0 = performance.now()
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (performance.now() < end) await store.record(event(i++))
  }))
  const after = store.commitStats()
  const items = after.items - before.items
  return { rate: Math.round(items / ((performance.now() - t0) / 1000)), batch: Math.round(items / Math.max(1, after.batches - before.batches)) }
}

async function issueRate(store: BrokerStore, seconds: number): Promise<number> {
  const config = loadConfig({ env: { CTB_DATA_DIR: join(dir, 'data'), CTB_TRUST_DOMAIN: 'pool.example.org' } })
  const { keys } = ensureAndLoadKeys(config, systemClock.now())
  const decision: AllowedDecision = {
    allow: true, ruleId: 'bench', role: 'pilot', tokenKind: 'idtoken', identity: 'pilot-1@pilots.pool.example.org',
    scopes: ['ADVERTISE_STARTD', 'READ'], audience: [], lifetime: 3600,
  }
  const deps = issueDepsFrom(config, { keys, audit: store, clock: systemClock, generations: { generationOf: () => 1 } })
  const caller = { iss: 'https://iam.example.org/', sub: 'factory', groups: [], scopes: [], exp: 0, claims: {} }
  let n = 0
  const end = performance.now() + seconds * 1000
  const t0 = performance.now()
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (performance.now() < end) { await issueToken(decision, { requestId: 'r', caller }, deps); n++ }
  }))
  return Math.round(n / ((performance.now() - t0) / 1000))
}

async function fill(store: BrokerStore, total: number): Promise<number> {
  const t0 = performance.now()
  let next = 0
  const have = store.commitStats().items
  await Promise.all(Array.from({ length: 1024 }, async () => {
    while (next < total - have) await store.record(event(next++))
  }))
  return Math.round((total - have) / ((performance.now() - t0) / 1000))
}

async function queryLatency(store: BrokerStore, label: string): Promise<void> {
  const TOKEN = 'b'.repeat(43)
  const app = new Hono()
  app.route('/', auditRoutes({ audit: store, clock: systemClock, liveWindow: async () => 86400, auth: adminAuth({ authenticators: [bootstrapTokenAuthenticator(createHash('sha256').update(TOKEN).digest())] }) }))
  const mid = T0 + Math.floor(RECORDS * 1.3)
  const queries: Array<[string, (k: number) => string]> = [
    ['newest page, no filter', () => '/v1/audit?limit=100'],
    ['summary, 1 day per hour', () => `/v1/audit/summary?from=${mid - 86400}&to=${mid}`],
    ['role + 1-day window', (k) => `/v1/audit?role=role-${k % 20}&from=${mid - 86400}&to=${mid}&limit=100`],
    ['issued sub', (k) => `/v1/audit?sub=pilot-${k % 10_000}@pilots.pool.example.org&limit=100`],
    ['caller + decision=deny', (k) => `/v1/audit?caller=caller-${(k * 20) % 500}&decision=deny&limit=100`],
    ['jti', (k) => `/v1/audit?jti=${createHash('md5').update(String((k * 7919) % RECORDS)).digest('hex')}`],
    ['decision=deny + 1-hour window', () => `/v1/audit?decision=deny&from=${mid - 3600}&to=${mid}&limit=100`],
    ['site, page 2', (k) => `/v1/audit?site=SITE_${k % 50}&limit=100`],
  ]
  for (const [name, path] of queries) {
    const ms: number[] = []
    let rows = 0
    for (let k = 0; k < 60; k++) {
      let p = path(k)
      if (name === 'site, page 2') {
        const first = await (await app.request(p, { headers: { authorization: `Bearer ${TOKEN}` } })).json() as { next_cursor?: string }
        p += `&cursor=${first.next_cursor}`
      }
      const t = performance.now()
      const res = await app.request(p, { headers: { authorization: `Bearer ${TOKEN}` } })
      // A records page, or the summary (an overview, counted as one row).
      const body = await res.json() as { records?: unknown[] }
      ms.push(performance.now() - t)
      if (res.status !== 200) throw new Error(`${p}: ${res.status}`)
      rows += body.records?.length ?? 1
    }
    // The first query is shown apart: on SQLite a jti lookup first reads the log into the jti index.
    const first = ms[0]!
    ms.sort((a, b) => a - b)
    console.log(`  ${label} GET /v1/audit ${name.padEnd(30)} p50 ${ms[30]!.toFixed(2)} ms  p95 ${ms[57]!.toFixed(2)} ms  max ${ms[59]!.toFixed(2)} ms  first ${first.toFixed(0)} ms  (avg ${Math.round(rows / 60)} rows)`)
  }
}

async function benchStore(label: string, open: () => Promise<BrokerStore>): Promise<void> {
  let store = await open()
  for (const c of [1, 16, CONCURRENCY, 1024]) {
    const r = await recordRate(store, SECONDS, c, 10_000_000 + c * 1_000_000)
    console.log(`  ${label} record(): concurrency ${String(c).padStart(4)}  ${String(r.rate).padStart(7)} records/s  (avg ${r.batch} records per commit)`)
  }
  console.log(`  ${label} issueToken (IDTOKEN mint + self-verify + audit), concurrency ${CONCURRENCY}: ${await issueRate(store, SECONDS)} tokens/s`)
  await store.close()
  // A fresh store for the query benchmark so the data has the intended distribution.
  store = await open()
  const rate = await fill(store, RECORDS)
  const v0 = performance.now()
  const v = await store.verify()
  console.log(`  ${label} filled ${RECORDS} records at ${rate} records/s; audit verify ${v.ok ? 'OK' : 'BROKEN'} in ${((performance.now() - v0) / 1000).toFixed(1)} s`)
  await queryLatency(store, label)
  await store.close()
}

console.log(`node ${process.version}, ${RECORDS} records, ${SECONDS} s per rate run`)
let n = 0
await benchStore('sqlite(full)', async () => new SqliteStore({ file: join(dir, `a${++n}.db`), synchronous: 'full' }))
console.log(`  sqlite file size: ${(statSync(join(dir, `a${n}.db`)).size / 1e6).toFixed(0)} MB`)
let pgServer: TestPostgres | undefined
if (!args['no-pg']) {
  try {
    findPostgresBin()
    pgServer = await startPostgres()
    let db = 0
    await benchStore('postgres', async () => PostgresStore.open({ dsn: await pgServer!.createDatabase(`bench_${++db}`), poolSize: 4 }))
  } catch (err) {
    console.log(`  postgres: skipped (${(err as Error).message.split('\n')[0]})`)
  } finally {
    await pgServer?.stop()
  }
}
rmSync(dir, { recursive: true, force: true })
