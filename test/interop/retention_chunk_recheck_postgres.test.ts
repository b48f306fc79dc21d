import pg from 'pg'
import { afterAll, beforeAll, expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/audit_log.ts'
import { PostgresStore } from '../../src/storage/postgres_store.ts'
import type { WriteOp } from '../../src/storage/write_ops.ts'
import { startPostgres, type TestPostgres } from '../support/postgres.ts'

// PostgreSQL's side of test/integration/retention_chunk_recheck.test.ts: a chunk's transaction refuses when a
// record of its range that states a revocation was edited since retention checked the range, instead of
// deleting it and carrying what the edit says in a checkpoint the broker MACs.
const T0 = 1_800_000_000
const issued = (i: number, time = T0 + i): AuditEvent => ({ type: 'token.issued', time, jti: `j-${i}`, caller: { sub: 'alice' }, decision: 'allow' })

let server: TestPostgres
beforeAll(async () => { server = await startPostgres() }, 120_000)
afterAll(async () => { await server?.stop() })

for (const [name, what, sql] of [
  ['body', 'with its body edited', `UPDATE audit_log SET body = replace(body, 'SITE_A', 'SITE_B') WHERE seq = 5`],
  ['type', 'retyped in its type column', `UPDATE audit_log SET type = 'token.issued' WHERE seq = 5`],
] as const) {
  it(`PostgreSQL: a revocation record ${what} after the check is not pruned by its chunk`, async () => {
    const dsn = await server.createDatabase(`recheck_${name}`)
    const s = await PostgresStore.open({ dsn })
    const insider = new pg.Client({ connectionString: dsn })
    await insider.connect()
    try {
      // Chunks of 3 records (the field is the store's own; PRUNE_CHUNK otherwise).
      Object.defineProperty(s, 'pruneChunk', { value: 3 })
      let chunks = 0
      const commit = (PostgresStore.prototype as unknown as { commitBatch(ops: WriteOp[]): Promise<void> }).commitBatch
      Object.defineProperty(s, 'commitBatch', {
        value: async (ops: WriteOp[]) => {
          if (ops.some((op) => op.kind === 'prune') && chunks++ === 1) await insider.query(sql)
          return commit.call(s, ops)
        },
      })
      for (let i = 1; i <= 4; i++) await s.record(issued(i))
      await s.revoke({ kind: 'site', value: 'SITE_A', revokedAt: T0 + 5, until: T0 + 10_000 }, { type: 'token.revoked', time: T0 + 5, caller: { sub: 'admin' } })
      for (let i = 6; i <= 7; i++) await s.record(issued(i))
      await s.record(issued(8, T0 + 200))
      await expect(s.prune(T0 + 100, T0 + 300)).rejects.toThrow('the audit log changed while retention checked it; pruned 3 records (1 chunk')
      const left = (await insider.query<{ seq: string }>('SELECT seq FROM audit_log ORDER BY seq')).rows.map((r) => Number(r.seq))
      expect(left).toEqual([4, 5, 6, 7, 8, 9])
      expect(await s.verify()).toMatchObject({ ok: false, broken: { seq: 5 } })
    } finally { await insider.end(); await s.close() }
  })
}
