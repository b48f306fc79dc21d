// After a prune commits, the SQLite store reads where the log now starts (the jti index lets go of the pruned
// records' entries below it). That read met another process's lock (its WAL index being rebuilt,
// test/support/sqlite_recovery_lock.ts) outside the reads' outage handling: SQLite's own "database is
// locked" came out of prune() although its chunks had committed, so `audit prune` said "internal error"
// (status 70) and serve logged a failed prune for records that were gone. The read only keeps the jti
// index small: the next pass of the index reads it again, so the prune's result stands.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, expect, it } from 'vitest'
import { SERVING_READ_LOCK_BACKOFF_MS, SqliteStore } from '../../src/storage/sqlite_store.ts'
import { armWalRecovery } from '../support/sqlite_recovery_lock.ts'

const dir = mkdtempSync(join(tmpdir(), 'ctb-prunelock-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const T0 = 1_700_000_000

it('a lock taken right after a prune commits leaves the prune\'s result as committed', async () => {
  const file = join(dir, 'audit.db')
  // As serve opens it: the writer thread, the default busy timeouts.
  const store = new SqliteStore({ file })
  const lock = armWalRecovery(file)
  try {
    for (let i = 0; i < 10; i++) await store.record({ type: 'token.issued', time: T0 + i, jti: `j-${i}`, role: 'monitoring', site: 'east' })
    // The lock is taken once the prune's batch has committed, before prune() returns.
    store.observeBatches(() => { lock.holdNow() })
    // Records at T0..T0+4 are older than T0+5: five pruned, and the checkpoint is record 11 (hand-counted).
    const result = await store.prune(T0 + 5, T0 + 100).finally(() => { store.observeBatches(() => {}) })
    expect(result).toEqual({ pruned: 5, checkpointSeq: 11 })
  } finally {
    await lock.release()
  }
  try {
    // The lock gone (and the pause after a locked read over), a lookup by jti finds a live record and none of
    // the pruned ones.
    await new Promise((r) => setTimeout(r, SERVING_READ_LOCK_BACKOFF_MS + 100))
    expect((await store.query({ jti: 'j-7', limit: 10 })).records).toHaveLength(1)
    expect((await store.query({ jti: 'j-2', limit: 10 })).records).toHaveLength(0)
  } finally {
    await store.close()
  }
}, 30_000)
