// A command that only reads meets a SQLite file another process holds locked (its WAL index being
// rebuilt, test/support/sqlite_recovery_lock.ts): the operator gets one line naming the lock and a failing
// status, as for any store outage (docs/audit.md), not "internal error" (status 70) nor a stack trace.
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { expect, it } from 'vitest'
import { runCli } from '../../src/cli/main.ts'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
import { tempDir } from '../support/tmp.ts'
import { holdWalRecovery } from '../support/sqlite_recovery_lock.ts'

// One command: all three open the log the same way, and the lock stops them there (5 s each).
it('audit verify on a locked file: one line, status 1', async () => {
  const dataDir = join(tempDir(), 'data')
  const env = { CTB_DATA_DIR: dataDir, CTB_TRUST_DOMAIN: 'pool.example.org' }
  const file = join(dataDir, 'audit.db')
  const store = new SqliteStore({ file, writer: 'inline' })
  await store.record({ type: 'token.issued', time: 1_700_000_000, jti: 'j-1' })
  // Another process's connection keeps the WAL index there for the lock holder.
  const other = new DatabaseSync(file)
  other.prepare('SELECT count(*) FROM audit_log').get()
  await store.close()
  const lock = await holdWalRecovery(file)
  const out: string[] = []
  const err: string[] = []
  try {
    const code = await runCli(['audit', 'verify'], { out: (s) => out.push(s), err: (s) => err.push(s), env })
    expect(code).toBe(1)
  } finally {
    await lock.release()
    other.close()
  }
  expect(out).toEqual([])
  expect(err).toHaveLength(1)
  expect(err[0]).toMatch(/^condor-token-broker: .*database is locked/)
  expect(err[0]).not.toMatch(/internal error|\n\s+at /)
}, 30_000)
