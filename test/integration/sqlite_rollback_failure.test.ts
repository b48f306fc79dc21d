// A batch that fails inside its transaction is rolled back. If that ROLLBACK fails too (the disk that
// failed the batch failing again), the batch's own error is the one to report: store_outage.ts tells an
// outage by it (SQLITE_FULL, IOERR: 503, retried) and the ROLLBACK's error, with another code, must not
// replace it, or the outage turns into a 500. SQLite rolls a transaction back by itself on most such
// errors inside it (at max_page_count, SQLITE_FULL leaves none open), but a failed COMMIT leaves it open
// for the caller to roll back (https://www.sqlite.org/lang_transaction.html), so that is the case here:
// the COMMIT fails as a failed fsync makes it (SQLITE_IOERR_FSYNC, 10 | 4 << 8, rescode.html), then the
// ROLLBACK fails. Both failures are injected: no file condition fails them on demand.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, expect, it } from 'vitest'
import { asStoreOutage, isStoreOutage } from '../../src/storage/store_outage.ts'
import { AuditStoreUnavailable } from '../../src/errors.ts'
import { openSqliteDb, SqliteChainWriter } from '../../src/storage/sqlite_writer.ts'

const dir = mkdtempSync(join(tmpdir(), 'ctb-rollback-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const SQLITE_IOERR = 10
const event = (jti: string) => ({ kind: 'event' as const, json: JSON.stringify({ type: 'token.issued', time: 1_700_000_000, jti }) })

it('keeps the failed COMMIT\'s IOERR when the ROLLBACK after it fails, and ends the transaction left open at the next batch', async () => {
  const db = openSqliteDb({ file: join(dir, 'audit.db'), synchronous: 'normal' })
  try {
    const writer = new SqliteChainWriter(db)
    const exec = db.exec.bind(db)
    let fail = true
    db.exec = (sql: string) => {
      if (fail && sql === 'COMMIT') throw Object.assign(new Error('disk I/O error'), { code: 'ERR_SQLITE_ERROR', errcode: SQLITE_IOERR | (4 << 8), errstr: 'disk I/O error' })
      if (fail && sql === 'ROLLBACK') throw Object.assign(new Error('cannot rollback transaction'), { code: 'ERR_SQLITE_ERROR', errcode: 1, errstr: 'SQL logic error' })
      exec(sql)
    }
    const err = (() => { try { writer.commit([event('j-1')]); return undefined } catch (e) { return e } })()
    expect((err as { errcode?: number }).errcode! & 0xff).toBe(SQLITE_IOERR)
    expect(isStoreOutage(err)).toBe(true)
    expect(asStoreOutage(err)).toBeInstanceOf(AuditStoreUnavailable)
    // The log still learns that the rollback failed.
    expect((err as Error).message).toMatch(/rollback/i)
    // The failed ROLLBACK left the transaction open: the next batch ends it first, then commits.
    expect(db.isTransaction).toBe(true)
    fail = false
    writer.commit([event('j-2')])
    expect(db.isTransaction).toBe(false)
    expect((db.prepare('SELECT count(*) AS n FROM audit_log').get() as { n: number }).n).toBe(1)
  } finally {
    db.close()
  }
})
