import { join } from 'node:path'
import { expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/audit_log.ts'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
import { tempDir } from '../support/tmp.ts'

// Turning retention on over a large log: the first prune deletes most of it. Issuance must not notice. A
// request's record that arrives while the prune deletes commits within a small bound (a chunk's delete), not
// after the whole prefix is gone: a single writer busy with one long delete keeps every request waiting.
const T0 = 1_800_000_000
/** Far more than one chunk of a prune, and one transaction over all of them takes seconds on this box. */
const OLD = 400_000
/**
 * The longest a record may wait while the prune runs: a chunk's delete and checkpoint plus a group commit,
 * with slack for a loaded 2-core box. One delete of the whole prefix takes several times this.
 */
const BOUND_MS = 1000

const issued = (i: number, time: number): AuditEvent => ({ type: 'token.issued', time, jti: `j-${i}`, caller: { sub: 'alice' }, decision: 'allow', role: 'pilot', site: 'hpc-a' })

it('a record submitted while retention prunes a large prefix commits within a small bound', async () => {
  const store = new SqliteStore({ file: join(tempDir(), 'audit.db'), groupCommit: { maxBatch: 10_000, maxPending: 20_000 } })
  try {
    // In bulk: group commit writes up to 10,000 records per transaction.
    for (let i = 0; i < OLD; i += 10_000) await Promise.all(Array.from({ length: 10_000 }, (_, k) => store.record(issued(i + k, T0 + 1))))
    await store.record(issued(OLD, T0 + 1000))

    const waits: number[] = []
    let pruning = true
    const started = performance.now()
    const prune = store.prune(T0 + 100, T0 + 2000).finally(() => { pruning = false })
    let n = 0
    // Bounded: the prune ends (or the test's timeout does).
    while (pruning) {
      const t = performance.now()
      await store.record(issued(OLD + 1 + n++, T0 + 2000))
      waits.push(performance.now() - t)
      await new Promise((r) => setTimeout(r, 10))
    }
    const result = await prune
    const total = performance.now() - started
    const longest = Math.max(...waits)
    console.log(`sqlite: pruned ${result.pruned} records in ${Math.round(total)} ms; ${waits.length} records meanwhile, the longest waited ${Math.round(longest)} ms`)
    expect(result.pruned).toBe(OLD)
    expect(longest).toBeLessThan(BOUND_MS)
    // The records written meanwhile are all there, after the pruned prefix, and the chain verifies.
    expect(await store.verify()).toMatchObject({ ok: true, firstSeq: OLD + 1 })
    const meanwhile = (await store.query({ type: 'token.issued', limit: 1000 })).records
    expect(meanwhile.length).toBe(Math.min(1000, 1 + waits.length))
    expect(meanwhile[0]!.event.jti).toBe(`j-${OLD + waits.length}`)
  } finally { await store.close() }
}, 180_000)
