import { expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/audit_log.ts'
import type { StoredRow } from '../../src/audit/chain.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'

// Replicas started together prune together (same prune_interval). Retention reads the records it is about
// to prune in chunks (500 on SQLite, 5000 on PostgreSQL); when the other replica's delete commits between
// two chunks, the next chunk starts past a gap. That is the other prune, not a record deleted by hand.
const T0 = 1_800_000_000
const issued = (i: number, time = T0 + i): AuditEvent => ({ type: 'token.issued', time, jti: `j-${i}`, caller: { sub: 'alice' }, decision: 'allow' })

/** A store whose scan, after its first row, lets another replica's prune of the same range commit. */
class PeerPrunesMidScan extends MemoryStore {
  peerPruneAt: number | undefined
  protected override async *scanRows(fromSeq: number): AsyncIterable<StoredRow> {
    const before = this.peerPruneAt
    this.peerPruneAt = undefined
    let next = fromSeq
    for await (const row of super.scanRows(fromSeq)) {
      yield row
      next = Number(row.seq) + 1
      if (before !== undefined) break
    }
    if (before === undefined) return
    expect(await this.prune(before, T0 + 500)).toMatchObject({ pruned: 4 })
    // The next chunk, read after the other prune committed.
    yield* super.scanRows(next)
  }
}

it('retention finds nothing left to do when another replica prunes the range while it reads it', async () => {
  const s = new PeerPrunesMidScan()
  for (let i = 1; i <= 4; i++) await s.record(issued(i))
  for (let i = 5; i <= 6; i++) await s.record(issued(i, T0 + 200 + i))
  s.peerPruneAt = T0 + 100
  expect(await s.prune(T0 + 100, T0 + 500)).toEqual({ pruned: 0 })
  expect(await s.verify()).toMatchObject({ ok: true, firstSeq: 5 })
})

it('still refuses to prune over a record deleted by hand', async () => {
  const s = new PeerPrunesMidScan()
  for (let i = 1; i <= 4; i++) await s.record(issued(i))
  for (let i = 5; i <= 6; i++) await s.record(issued(i, T0 + 200 + i))
  s.rawRows().splice(1, 1)
  await expect(s.prune(T0 + 100, T0 + 500)).rejects.toThrow('audit chain broken at seq 2: record missing (next present record is seq 3); not pruning (run "audit verify")')
})
