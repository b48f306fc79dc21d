// A COMMIT that PostgreSQL never answers within audit.postgres.query_timeout_seconds. Its outcome is unknown,
// like a COMMIT whose answer was lost (docs/audit.md): the record is refused as an outage (503
// temporarily_unavailable, RFC 6749 §4.1.2.1), so its token is withheld, and the connection, still inside its
// unanswered COMMIT, is discarded rather than handed to the next caller. The COMMIT is held here by a
// synchronous standby that does not exist: the server has committed locally and waits for a replica's
// acknowledgement that never comes (PostgreSQL docs, "Synchronous Replication"), which is exactly a committed
// transaction whose answer the broker does not get.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, expect, it } from 'vitest'
import pg from 'pg'
import { runCli } from '../../src/cli/main.ts'
import type { AuditEvent } from '../../src/audit/audit_log.ts'
import type { RenewalRefusalReasons } from '../../src/storage/pilot_renewals.ts'
import { AuditStoreUnavailable } from '../../src/errors.ts'
import { PostgresStore } from '../../src/storage/postgres_store.ts'
import { startPostgres, type TestPostgres } from '../support/postgres.ts'

const TIMEOUT_MS = 1000
/** Event-loop and round-trip slack on a loaded 2-core box; less than a second timeout, which a ROLLBACK queued behind the COMMIT would add. */
const SLACK_MS = 700

let server: TestPostgres
let admin: pg.Client
let store: PostgresStore
beforeAll(async () => {
  server = await startPostgres()
  const dsn = await server.createDatabase('commit_timeout')
  admin = new pg.Client({ connectionString: server.dsn })
  await admin.connect()
  store = await PostgresStore.open({ dsn, queryTimeoutMs: TIMEOUT_MS })
})
afterAll(async () => {
  try {
    await admin?.query('ALTER SYSTEM RESET synchronous_standby_names').catch(() => {})
    await admin?.query('SELECT pg_reload_conf()').catch(() => {})
    await store?.close(); await admin?.end()
  } finally { await server?.stop() }
})

const issued = (jti: string): AuditEvent =>
  ({ type: 'token.issued', time: 1_800_000_000, requestId: `req-${jti}`, role: 'pilot', tokenKind: 'idtoken', jti, decision: 'allow', site: 'hpc-a' })

async function holdCommits(on: boolean) {
  await admin.query(on ? "ALTER SYSTEM SET synchronous_standby_names = 'nobody'" : 'ALTER SYSTEM RESET synchronous_standby_names')
  await admin.query('SELECT pg_reload_conf()')
}

it('a COMMIT not answered within the query timeout is refused as an outage at the bound, its connection discarded', async () => {
  await store.record(issued('before'))
  await holdCommits(true)
  let refusal: unknown
  let ms = 0
  try {
    const start = Date.now()
    refusal = await store.record(issued('held')).then(() => undefined, (e: unknown) => e)
    ms = Date.now() - start
    console.log(`COMMIT held by the server, query_timeout ${TIMEOUT_MS} ms: refused after ${ms} ms`)
    // While the server still holds that COMMIT, a read on the pool is answered at once: the connection in its
    // COMMIT was not returned to the pool, where the read would have queued behind it until the bound.
    const readStart = Date.now()
    expect((await store.sql('SELECT 1 AS one')).rows).toEqual([{ one: 1 }])
    expect(Date.now() - readStart).toBeLessThan(TIMEOUT_MS)
  } finally { await holdCommits(false) }
  expect(refusal).toBeInstanceOf(AuditStoreUnavailable)
  expect((refusal as AuditStoreUnavailable).status).toBe(503)
  expect(ms).toBeGreaterThanOrEqual(TIMEOUT_MS - 50)
  expect(ms).toBeLessThan(TIMEOUT_MS + SLACK_MS)

  // The server committed locally before it waited: a record of a token nobody received, never the reverse.
  // It becomes visible once the server releases the wait, which the reload does asynchronously.
  let held: string[] = []
  for (let i = 0; i < 50 && held.length === 0; i++) {
    held = (await store.query({ jti: 'held', limit: 10 })).records.map((r) => r.event.type)
    if (held.length === 0) await new Promise((r) => setTimeout(r, 100))
  }
  expect(held).toEqual(['token.issued'])
  // The store writes again on a fresh connection, and the chain holds every record in order.
  await store.record(issued('after'))
  expect((await store.query({ limit: 10 })).records.map((r) => r.event.jti)).toEqual(['after', 'held', 'before'])
  expect((await store.verify()).ok).toBe(true)
})

// Retention's delete grows with the pruned range (the first prune after retention is turned on may take most
// of a large log): it has the long bound, not the request's. Here the delete waits on a row lock held past
// the request bound, standing in for a delete that runs that long.
it('retention\'s delete runs past the query timeout under long_query_timeout_seconds; with the short bound it would fail', async () => {
  const T0 = 1_800_000_000
  const dsn = await server.createDatabase('prune_long')
  const prunable = (longQueryTimeoutMs: number) => PostgresStore.open({ dsn, queryTimeoutMs: TIMEOUT_MS, longQueryTimeoutMs })
  const locker = new pg.Client({ connectionString: dsn })
  await locker.connect()
  const pruneWhileLocked = async (s: PostgresStore) => {
    const first = (await s.sql('SELECT min(seq)::int AS seq FROM audit_log')).rows[0].seq as number
    await locker.query('BEGIN')
    await locker.query('SELECT seq FROM audit_log WHERE seq = $1 FOR UPDATE', [first])
    const release = new Promise<void>((r) => setTimeout(() => { void locker.query('COMMIT').then(() => r()) }, TIMEOUT_MS + 500))
    try {
      return await s.prune(T0 + 100, T0 + 1000).then((r) => r, (e: unknown) => e)
    } finally { await release }
  }
  const short = await prunable(TIMEOUT_MS)
  const long = await prunable(60_000)
  try {
    for (let i = 1; i <= 6; i++) await long.record({ ...issued(`old-${i}`), time: T0 + i })
    const cut = await pruneWhileLocked(short)
    expect(cut).toBeInstanceOf(AuditStoreUnavailable)
    expect(await pruneWhileLocked(long)).toEqual({ pruned: 6, checkpointSeq: 7 })
    expect((await long.verify()).ok).toBe(true)
  } finally { await short.close(); await long.close(); await locker.end() }
})

// Replicas starting together migrate one at a time under an advisory lock; one that waits for another's
// migration (index builds over the whole log) waits as long as that takes, under the long bound.
it('a store opening while another holds the migration lock past the query timeout waits for it, under the long bound', async () => {
  const dsn = await server.createDatabase('migrate_wait')
  const locker = new pg.Client({ connectionString: dsn })
  await locker.connect()
  try {
    await locker.query('BEGIN')
    // The lock every replica's migration takes (postgres_store.ts MIGRATION_LOCK, "ctb1" in ASCII).
    await locker.query('SELECT pg_advisory_xact_lock($1)', [0x6374_6231])
    const release = new Promise<void>((r) => setTimeout(() => { void locker.query('COMMIT').then(() => r()) }, TIMEOUT_MS + 500))
    const opened = await PostgresStore.open({ dsn, queryTimeoutMs: TIMEOUT_MS, longQueryTimeoutMs: 60_000 }).then((s) => s, (e: unknown) => e)
    await release
    expect(opened).toBeInstanceOf(PostgresStore)
    await (opened as PostgresStore).close()
  } finally { await locker.end() }
})

// A prune's transaction runs under the long bound; a request's record queued behind it is answered within the
// request's bound (503, retried), unsent, rather than waiting out the prune (on a frozen server, up to
// long_query_timeout_seconds). Here the prune's delete waits on a row lock held well past the short bound.
it('a record queued behind a long prune is refused, unsent, at the query timeout; the prune carries on and commits', async () => {
  const T0 = 1_800_000_000
  // The lock is released only once the record is answered: without a queue bound, the record waits for the
  // prune's delete to time out at the long bound.
  const LONG_MS = 20_000
  const dsn = await server.createDatabase('prune_queue')
  const s = await PostgresStore.open({ dsn, queryTimeoutMs: TIMEOUT_MS, longQueryTimeoutMs: LONG_MS })
  const locker = new pg.Client({ connectionString: dsn })
  await locker.connect()
  try {
    for (let i = 1; i <= 3; i++) await s.record({ ...issued(`old-${i}`), time: T0 + i })
    await locker.query('BEGIN')
    await locker.query('SELECT seq FROM audit_log WHERE seq = 1 FOR UPDATE')
    const prune = s.prune(T0 + 100, T0 + 1000).then((r) => r, (e: unknown) => e)
    // Until the prune's delete waits on the lock: its batch is the one in flight.
    let waiting = false
    for (let i = 0; i < 100 && !waiting; i++) {
      // Asked outside the locker's transaction, which would see one snapshot of pg_stat_activity throughout.
      const { rows } = await admin.query("SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'DELETE FROM audit_log WHERE seq%'")
      waiting = rows.length > 0
      if (!waiting) await new Promise((r) => setTimeout(r, 50))
    }
    expect(waiting).toBe(true)
    const start = Date.now()
    const refusal = await s.record({ ...issued('behind-prune'), time: T0 + 2000 }).then(() => undefined, (e: unknown) => e)
    const ms = Date.now() - start
    console.log(`record queued behind a held prune, query_timeout ${TIMEOUT_MS} ms, long bound ${LONG_MS} ms: answered after ${ms} ms`)
    await locker.query('COMMIT')
    expect(refusal).toBeInstanceOf(AuditStoreUnavailable)
    expect((refusal as AuditStoreUnavailable).status).toBe(503)
    expect(ms).toBeLessThan(TIMEOUT_MS + SLACK_MS)
    expect(await prune).toEqual({ pruned: 3, checkpointSeq: 4 })
    // Refused unsent: no record of it, and the chain verifies.
    expect((await s.query({ jti: 'behind-prune', limit: 10 })).records).toEqual([])
    expect((await s.verify()).ok).toBe(true)
  } finally { await locker.query('ROLLBACK').catch(() => {}); await locker.end(); await s.close() }
})

// A CLI command whose read is not answered within the bound is an outage, like a server that refuses the
// connection: one line naming it and exit 1 (docs/audit.md), not "internal error" and exit 70, which says a
// bug. `audit verify` reads the revocation state in one snapshot of its own; here that read waits on a table
// lock held past the bound, standing in for a server that stopped answering mid-command.
it('audit verify whose read times out says the store cannot be read, in one line, and exits 1', async () => {
  const dsn = await server.createDatabase('verify_timeout')
  const s = await PostgresStore.open({ dsn })
  await s.record(issued('one'))
  await s.close()
  const dataDir = mkdtempSync(join(tmpdir(), 'ctb-verify-timeout-'))
  const locker = new pg.Client({ connectionString: dsn })
  await locker.connect()
  try {
    await locker.query('BEGIN')
    await locker.query('LOCK TABLE audit_log IN ACCESS EXCLUSIVE MODE')
    const err: string[] = []
    const env = { CTB_DATA_DIR: dataDir, CTB_TRUST_DOMAIN: 'pool.example.org', CTB_AUDIT_STORE: 'postgres', CTB_AUDIT_POSTGRES_DSN: dsn, CTB_AUDIT_POSTGRES_QUERY_TIMEOUT_SECONDS: '1' }
    const code = await runCli(['audit', 'verify'], { out: () => {}, err: (line) => err.push(line), env })
    expect(err.join('\n')).toBe('condor-token-broker: the audit store cannot be read right now (Query read timeout)')
    expect(code).toBe(1)
  } finally {
    await locker.query('ROLLBACK').catch(() => {}); await locker.end()
    rmSync(dataDir, { recursive: true, force: true })
  }
})

// A pilot renewal whose COMMIT the bound cut, the server committing it anyway: the pilot got 503 and retries
// with the token it holds. That is a lost answer's retry (docs/pilots.md, "Renewal chains and reuse"): renewed,
// retiring the successor nobody received, never judged reuse, and nothing revoked.
it('a renewal whose COMMIT timed out but landed is renewed again on the pilot\'s retry, not judged reuse', async () => {
  const T0 = 1_800_000_000
  const END = T0 + 7200
  const REASONS: RenewalRefusalReasons = { reused: 'invalid_grant: reused', stale: 'invalid_grant: stale' }
  const dsn = await server.createDatabase('renew_timeout')
  const s = await PostgresStore.open({ dsn, queryTimeoutMs: TIMEOUT_MS })
  const renew = (replaces: string, successor: string, time: number) => s.renewPilotToken({ replaces, expires: END },
    { type: 'token.renewed', time, requestId: `renew-${successor}`, role: 'pilot', tokenKind: 'idtoken', jti: successor, decision: 'allow', site: 'hpc-b', detail: { replaces } },
    { type: 'token.denied', time, requestId: `refuse-${time}`, role: 'pilot', decision: 'deny', site: 'hpc-b', detail: { pilot: 'renew' } }, REASONS)
  try {
    expect(await renew('p0', 'p1', T0 + 10)).toEqual({ renewed: true })
    await holdCommits(true)
    let cut: unknown
    try { cut = await renew('p1', 'p2', T0 + 20).then(() => undefined, (e: unknown) => e) } finally { await holdCommits(false) }
    expect(cut).toBeInstanceOf(AuditStoreUnavailable)
    let landed: string[] = []
    for (let i = 0; i < 50 && landed.length === 0; i++) {
      landed = (await s.query({ jti: 'p2', limit: 10 })).records.map((r) => r.event.type)
      if (landed.length === 0) await new Promise((r) => setTimeout(r, 100))
    }
    expect(landed).toEqual(['token.renewed'])
    expect(await renew('p1', 'p2b', T0 + 25)).toEqual({ renewed: true, supersedes: 'p2' })
    expect(await renew('p2b', 'p3', T0 + 40)).toEqual({ renewed: true })
    const events = (await s.query({ limit: 100 })).records.map((r) => r.event.type)
    expect(events.filter((t) => t === 'token.denied' || t === 'token.revoked')).toEqual([])
    expect((await s.verify()).ok).toBe(true)
  } finally { await s.close() }
})

// The reseed at the start of serve folds in what was appended since the last start; the first start after the
// upgrade that added its mark, or after the log was cut back, reads the whole log (issuance_horizon.ts:
// ~0.5-1 s per million records on PostgreSQL). It grows with the log, so it has the long bound: under the
// request's bound a large log would fail every start. Here it waits on a row lock held past the short bound.
it('the start-up reseed of the issuance horizons runs past the query timeout under the long bound', async () => {
  const dsn = await server.createDatabase('reseed_long')
  const s = await PostgresStore.open({ dsn, queryTimeoutMs: TIMEOUT_MS, longQueryTimeoutMs: 60_000 })
  const locker = new pg.Client({ connectionString: dsn })
  await locker.connect()
  try {
    await s.record(issued('one'))
    await locker.query('BEGIN')
    await locker.query('SELECT seq FROM issuance_horizon_seeded WHERE id = 1 FOR UPDATE')
    const release = new Promise<void>((r) => setTimeout(() => { void locker.query('COMMIT').then(() => r()) }, TIMEOUT_MS + 500))
    const reseeded = await s.reseedHorizons().then(() => 'reseeded', (e: unknown) => e)
    await release
    expect(reseeded).toBe('reseeded')
    expect((await s.sql('SELECT seq FROM issuance_horizon_seeded WHERE id = 1')).rows).toEqual([{ seq: 1 }])
  } finally { await locker.query('ROLLBACK').catch(() => {}); await locker.end(); await s.close() }
})
