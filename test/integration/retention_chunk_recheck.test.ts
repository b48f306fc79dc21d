import { DatabaseSync } from 'node:sqlite'
import { join } from 'node:path'
import { expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/audit_log.ts'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
import type { WriteOp } from '../../src/storage/write_ops.ts'
import { tempDir } from '../support/tmp.ts'

// The SQLite writer's side of test/unit/retention_chunks.test.ts: a chunk's transaction re-reads the records
// of its range that state revocations and refuses when one was edited since retention checked the range,
// instead of deleting it and carrying what the edit says in a checkpoint the broker MACs.
const T0 = 1_800_000_000
const issued = (i: number, time = T0 + i): AuditEvent => ({ type: 'token.issued', time, jti: `j-${i}`, caller: { sub: 'alice' }, decision: 'allow' })

class SmallChunks extends SqliteStore {
  protected override readonly pruneChunk = 3
  #chunks = 0
  /** Run (as an insider with SQL on the file would) before the second chunk commits. */
  beforeSecond: (() => void) | undefined
  protected override commitBatch(ops: WriteOp[]): void {
    if (ops.some((op) => op.kind === 'prune') && this.#chunks++ === 1) this.beforeSecond?.()
    super.commitBatch(ops)
  }
}

for (const [what, sql] of [
  ['with its body edited', `UPDATE audit_log SET body = replace(body, 'SITE_A', 'SITE_B') WHERE seq = 5`],
  ['retyped in its type column', `UPDATE audit_log SET type = 'token.issued' WHERE seq = 5`],
] as const) {
  it(`SQLite: a revocation record ${what} after the check is not pruned by its chunk`, async () => {
    const file = join(tempDir(), 'audit.db')
    const s = new SmallChunks({ file, writer: 'inline' })
    try {
      for (let i = 1; i <= 4; i++) await s.record(issued(i))
      await s.revoke({ kind: 'site', value: 'SITE_A', revokedAt: T0 + 5, until: T0 + 10_000 }, { type: 'token.revoked', time: T0 + 5, caller: { sub: 'admin' } })
      for (let i = 6; i <= 7; i++) await s.record(issued(i))
      await s.record(issued(8, T0 + 200))
      s.beforeSecond = () => { const db = new DatabaseSync(file); try { db.exec(sql) } finally { db.close() } }
      await expect(s.prune(T0 + 100, T0 + 300)).rejects.toThrow('the audit log changed while retention checked it; pruned 3 records (1 chunk')
      const left: number[] = []
      for await (const r of s.scanStored()) left.push(Number(r.seq))
      expect(left).toEqual([4, 5, 6, 7, 8, 9])
      expect(await s.verify()).toMatchObject({ ok: false, broken: { seq: 5 } })
    } finally { await s.close() }
  })
}
