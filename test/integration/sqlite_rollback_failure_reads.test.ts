// A failed COMMIT whose ROLLBACK fails too leaves its transaction open on the connection
// (sqlite_rollback_failure.test.ts): the next batch rolls it back before it begins. On the inline writer
// (the CLI's) that connection is also the one every read uses, and a connection sees its own uncommitted
// rows: until that next batch, reads would return the failed batch's records as if committed, records of
// writes the caller was told failed. And the revocation check's BEGIN would fail on the open transaction
// with no outage code (a 500, "internal error"). A read must end such a transaction (roll it back, never
// commit it) first, as the next batch does. Both failures are injected, as no file condition fails them
// on demand: the COMMIT as a failed fsync (SQLITE_IOERR_FSYNC, rescode.html), then the ROLLBACK.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { afterAll, afterEach, expect, it } from 'vitest'
import { AuditStoreUnavailable } from '../../src/errors.ts'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'

const dir = mkdtempSync(join(tmpdir(), 'ctb-rollback-reads-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const realExec = Object.getOwnPropertyDescriptor(DatabaseSync.prototype, 'exec')!
afterEach(() => { Object.defineProperty(DatabaseSync.prototype, 'exec', realExec) })

/** Makes COMMIT fail as a failed fsync, then ROLLBACK fail, on every connection of this thread, until undone. */
function failCommitAndRollback(): () => void {
  const exec = realExec.value as (this: DatabaseSync, sql: string) => void
  let on = true
  Object.defineProperty(DatabaseSync.prototype, 'exec', {
    ...realExec,
    value(this: DatabaseSync, sql: string) {
      if (on && sql === 'COMMIT') throw Object.assign(new Error('disk I/O error'), { code: 'ERR_SQLITE_ERROR', errcode: 10 | (4 << 8), errstr: 'disk I/O error' })
      if (on && sql === 'ROLLBACK') throw Object.assign(new Error('cannot rollback transaction'), { code: 'ERR_SQLITE_ERROR', errcode: 1, errstr: 'SQL logic error' })
      exec.call(this, sql)
    },
  })
  return () => { on = false }
}

it('reads after a failed COMMIT and ROLLBACK see only what was committed, and the revocation check runs', async () => {
  const store = new SqliteStore({ file: join(dir, 'audit.db'), writer: 'inline' })
  try {
    await store.record({ type: 'token.issued', time: 1_700_000_000, jti: 'kept' })
    const heal = failCommitAndRollback()
    const err = await store.record({ type: 'token.issued', time: 1_700_000_001, jti: 'failed' }).then(() => undefined, (e: unknown) => e)
    heal()
    // The caller was told the write failed, as an outage.
    expect(err).toBeInstanceOf(AuditStoreUnavailable)
    expect((await store.query({ jti: 'failed', limit: 10 })).records).toEqual([])
    expect((await store.query({ limit: 10 })).records.map((r) => r.event.jti)).toEqual(['kept'])
    expect((await store.verifyRevocations()).ok).toBe(true)
    // And the rolled-back batch left nothing behind to commit later.
    await store.record({ type: 'token.issued', time: 1_700_000_002, jti: 'after' })
    expect((await store.query({ limit: 10 })).records.map((r) => r.event.jti).sort()).toEqual(['after', 'kept'])
    expect((await store.verify()).ok).toBe(true)
  } finally {
    await store.close()
  }
})
