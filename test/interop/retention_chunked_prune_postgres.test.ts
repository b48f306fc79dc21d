// Turning retention on over a large log on PostgreSQL: the first prune deletes most of it. A prune's
// transaction holds the chain-head row lock, which every replica's batch takes; in one transaction over the
// whole prefix, this replica's records waited in its queue until refused (503 at query_timeout_seconds) and
// another replica's records waited on the lock. Pruned in chunks, each transaction is short and records of
// both commit between them (docs/audit.md, "Retention").
import { afterAll, beforeAll, expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/audit_log.ts'
import { PostgresStore } from '../../src/storage/postgres_store.ts'
import { startPostgres, type TestPostgres } from '../support/postgres.ts'

const T0 = 1_800_000_000
/** Far more than one chunk of a prune; one transaction over all of them takes seconds on this box. */
const OLD = 600_000
/** A request's statement bound (audit.postgres.query_timeout_seconds), short as a test's. */
const TIMEOUT_MS = 2000
/**
 * The longest a record may wait while the prune runs: a chunk's transaction and a group commit, with slack
 * for a loaded 2-core box (0.73 s seen at load average 10); under the request bound, which one transaction
 * over the prefix outlasts (before chunking, records waited it out and were refused).
 */
const BOUND_MS = 1500

let server: TestPostgres
beforeAll(async () => { server = await startPostgres() }, 120_000)
afterAll(async () => { await server?.stop() })

const issued = (i: number, time: number): AuditEvent => ({ type: 'token.issued', time, jti: `j-${i}`, caller: { sub: 'alice' }, decision: 'allow', role: 'pilot', site: 'hpc-a' })

it('records of this replica and of another commit within a small bound while retention prunes a large prefix', async () => {
  const dsn = await server.createDatabase('chunked_prune')
  // In bulk: group commit writes up to 10,000 records per transaction.
  const filler = await PostgresStore.open({ dsn, groupCommit: { maxBatch: 10_000, maxPending: 20_000 } })
  const filled = performance.now()
  try {
    for (let i = 0; i < OLD; i += 10_000) await Promise.all(Array.from({ length: 10_000 }, (_, k) => filler.record(issued(i + k, T0 + 1))))
    await filler.record(issued(OLD, T0 + 1000))
  } finally { await filler.close() }
  console.log(`postgres: ${OLD + 1} records written in ${Math.round(performance.now() - filled)} ms`)

  const pruner = await PostgresStore.open({ dsn, queryTimeoutMs: TIMEOUT_MS, longQueryTimeoutMs: 600_000 })
  const peer = await PostgresStore.open({ dsn, queryTimeoutMs: TIMEOUT_MS })
  try {
    const waits = { here: [] as number[], peer: [] as number[] }
    const refused: Array<{ ms: number; err: unknown }> = []
    let pruning = true
    const started = performance.now()
    const prune = pruner.prune(T0 + 100, T0 + 2000).finally(() => { pruning = false })
    let n = 0
    const timed = async (store: PostgresStore, into: number[]) => {
      const t = performance.now()
      await store.record(issued(OLD + 1 + n++, T0 + 2000)).then(() => into.push(performance.now() - t), (err: unknown) => { refused.push({ ms: Math.round(performance.now() - t), err }) })
    }
    // Bounded: the prune ends (or the test's timeout does).
    while (pruning) {
      await Promise.all([timed(pruner, waits.here), timed(peer, waits.peer)])
      await new Promise((r) => setTimeout(r, 10))
    }
    const result = await prune
    const total = performance.now() - started
    const longest = { here: Math.round(Math.max(...waits.here)), peer: Math.round(Math.max(...waits.peer)) }
    console.log(`postgres: pruned ${result.pruned} records in ${Math.round(total)} ms; ${n} records meanwhile, ${refused.length} refused${refused.length > 0 ? ` after ${refused.map((r) => r.ms).join(', ')} ms` : ''}; the longest waited ${longest.here} ms on the pruning replica, ${longest.peer} ms on the other`)
    expect(result.pruned).toBe(OLD)
    expect(refused).toEqual([])
    expect(longest.here).toBeLessThan(BOUND_MS)
    expect(longest.peer).toBeLessThan(BOUND_MS)
    expect(await pruner.verify()).toMatchObject({ ok: true, firstSeq: OLD + 1 })
    const meanwhile = (await pruner.query({ type: 'token.issued', limit: 1000 })).records
    expect(meanwhile.length).toBe(Math.min(1000, 1 + n))
  } finally { await pruner.close(); await peer.close() }
}, 600_000)
