// Micro-benchmark: what the pilot_renewals table (storage/pilot_renewals.ts) costs the SQLite writer. A
// renewal appends its record and inserts one row keyed by the replaced token's jti; this compares commits
// of renewal records alone against the same records through the renew op, on the writer itself (no thread,
// no group-commit queue), with the table already holding PREFILL rows. Not part of `npm run bench`.
//
//   node bench/pilot_renewals.ts [--prefill N] [--ops N] [--batch N] [--synchronous full|normal] [--pg]
//
// --pg also compares, on a throwaway local PostgreSQL (test/support/postgres.ts), renewals through
// PostgresStore.record() against renewPilotToken() at CONCURRENCY, where the row costs a statement (a round
// trip) inside the transaction that holds the chain-head lock.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import type { AuditEvent } from '../src/audit/audit_log.ts'
import { newJti } from '../src/lib/jti.ts'
import type { WriteOp } from '../src/storage/write_ops.ts'
import type { RenewalRefusalReasons, RenewOp } from '../src/storage/pilot_renewals.ts'
import { PostgresStore } from '../src/storage/postgres_store.ts'
import { openSqliteDb, SqliteChainWriter, type SqliteSynchronous } from '../src/storage/sqlite_writer.ts'
import { startPostgres } from '../test/support/postgres.ts'

const { values: args } = parseArgs({
  options: {
    prefill: { type: 'string', default: '200000' },
    ops: { type: 'string', default: '40000' },
    batch: { type: 'string', default: '256' },
    rounds: { type: 'string', default: '3' },
    synchronous: { type: 'string', default: 'normal' },
    pg: { type: 'boolean', default: false },
    concurrency: { type: 'string', default: '64' },
  },
})
const PREFILL = Number(args.prefill)
const OPS = Number(args.ops)
const BATCH = Number(args.batch)
const ROUNDS = Number(args.rounds)
const T0 = Math.floor(Date.now() / 1000)
const RATE = 100
/** A refusal's reasons: never used, as no renewal here is refused, but carried as the broker's are. */
const REASONS: RenewalRefusalReasons = { reused: 'invalid_grant: reused', stale: 'temporarily_unavailable: stale' }

function event(jti: string, replaces: string, i: number): AuditEvent {
  return {
    type: 'token.renewed', time: T0 + Math.floor(i / 1000), requestId: `r-${i}`, caller: { iss: 'pool.example.org', sub: 'pilot-hpc-b-1234-cn01@pilots.pool.example.org' },
    role: 'pilot', tokenKind: 'idtoken', issuedSub: 'pilot-hpc-b-1234-cn01@pilots.pool.example.org', jti, scopes: ['condor:/READ'], audience: [],
    exp: T0 + 21600, tokenSha256: 'ab'.repeat(32), policyRule: 'hpc-b-pilots', decision: 'allow', site: 'hpc-b',
    detail: { gen: 1, slurmJob: '1234', replaces, pilot: { site: 'hpc-b', job: '1234', node: 'cn01', jobEnd: T0 + 86400, rule: 'hpc-b-pilots', enrolment: 'e', redeemedAt: T0, restart: 0 } },
  }
}

function ops(kind: 'event' | 'renew', n: number, offset: number): WriteOp[] {
  const out: WriteOp[] = []
  for (let i = 0; i < n; i++) {
    // As pilots renew: the token replaced now was minted about half a token lifetime (3 h) earlier, and
    // renewals arrive in the order of those tokens' issue, RATE a second.
    const second = T0 - 10_800 + Math.floor((offset + i) / RATE)
    const jti = newJti(second + 10_800)
    const replaces = newJti(second)
    const json = JSON.stringify(event(jti, replaces, offset + i))
    if (kind === 'event') out.push({ kind: 'event', json })
    else {
      const op: RenewOp = { kind: 'renew', replaces, expires: T0 + 86400, successor: jti, time: T0, json, refusalJson: '{}', reusedReason: REASONS.reused, staleReason: REASONS.stale }
      out.push(op)
    }
  }
  return out
}

function commitAll(writer: SqliteChainWriter, all: WriteOp[]): number {
  const start = performance.now()
  for (let i = 0; i < all.length; i += BATCH) writer.commit(all.slice(i, i + BATCH))
  return performance.now() - start
}

const dir = mkdtempSync(join(tmpdir(), 'ctb-bench-renewals-'))
try {
  const db = openSqliteDb({ file: join(dir, 'audit.db'), synchronous: args.synchronous as SqliteSynchronous })
  const writer = new SqliteChainWriter(db)
  commitAll(writer, ops('renew', PREFILL, 0))
  console.log(`prefilled: ${PREFILL} renewal rows; batches of ${BATCH}; synchronous=${args.synchronous}`)
  const result: Record<string, number[]> = { event: [], renew: [] }
  // Alternating, so both see the same growing log and page cache.
  for (let r = 0; r < ROUNDS; r++) {
    for (const kind of ['event', 'renew'] as const) {
      const batch = ops(kind, OPS, PREFILL + r * 2 * OPS)
      result[kind]!.push(commitAll(writer, batch) * 1000 / OPS)
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
  const e = median(result.event!)
  const w = median(result.renew!)
  console.log(`record only:        ${e.toFixed(2)} µs per renewal (rounds: ${result.event!.map((x) => x.toFixed(2)).join(', ')})`)
  console.log(`record + table row: ${w.toFixed(2)} µs per renewal (rounds: ${result.renew!.map((x) => x.toFixed(2)).join(', ')})`)
  console.log(`difference:         ${(w - e).toFixed(2)} µs per renewal (${((w / e - 1) * 100).toFixed(0)}%)`)
  db.close()
} finally {
  rmSync(dir, { recursive: true, force: true })
}

if (args.pg) {
  const server = await startPostgres()
  try {
    const store = await PostgresStore.open({ dsn: await server.createDatabase('bench_pilot_renewals') })
    const concurrency = Number(args.concurrency)
    const run = async (kind: 'event' | 'renew', n: number, offset: number) => {
      let next = 0
      const start = performance.now()
      await Promise.all(Array.from({ length: concurrency }, async () => {
        while (next < n) {
          const i = offset + next++
          const second = T0 - 10_800 + Math.floor(i / RATE)
          const replaces = newJti(second)
          const e = event(newJti(second + 10_800), replaces, i)
          if (kind === 'event') await store.record(e)
          else await store.renewPilotToken({ replaces, expires: T0 + 86_400 }, e, { type: 'token.denied', time: e.time, decision: 'deny' }, REASONS)
        }
      }))
      return (performance.now() - start) * 1000 / n
    }
    const n = Math.min(OPS, 10_000)
    const pgResult: Record<string, number[]> = { event: [], renew: [] }
    for (let r = 0; r < ROUNDS; r++) for (const kind of ['event', 'renew'] as const) pgResult[kind]!.push(await run(kind, n, r * 2 * n))
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
    const e = median(pgResult.event!)
    const w = median(pgResult.renew!)
    console.log(`postgres, concurrency ${concurrency}, ${n} renewals a round:`)
    console.log(`  record only:        ${e.toFixed(1)} µs per renewal (rounds: ${pgResult.event!.map((x) => x.toFixed(1)).join(', ')})`)
    console.log(`  record + table row: ${w.toFixed(1)} µs per renewal (rounds: ${pgResult.renew!.map((x) => x.toFixed(1)).join(', ')})`)
    console.log(`  difference:         ${(w - e).toFixed(1)} µs per renewal (${((w / e - 1) * 100).toFixed(0)}%)`)
    await store.close()
  } finally {
    await server.stop()
  }
}
