import { existsSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { expect, it } from 'vitest'
import { openExistingSqlite } from '../../src/storage/sqlite_existing.ts'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
import { openSqliteDb } from '../../src/storage/sqlite_writer.ts'
import { tempDir } from '../support/tmp.ts'

// The writer and checkpointer threads open the file the store's own connection made a moment before. When it
// is gone by then (the data directory removed under a process that is ending, as `npm run demo` does when its
// reader goes away), a thread that created what it opens put an empty log back, directory and all: a new chain
// from seq 1 in a place the operator had just cleared.
it('the threads open only a log that is there, and create nothing when it is gone', () => {
  const dir = join(tempDir(), 'data')
  const file = join(dir, 'audit.db')
  expect(() => openSqliteDb({ file, mustExist: true })).toThrow(/cannot open the SQLite audit store/)
  expect(() => openExistingSqlite(file)).toThrow()
  expect(existsSync(dir)).toBe(false)
})

it('opens the log the store made, read-write', () => {
  const file = join(tempDir(), 'data', 'audit.db')
  openSqliteDb({ file }).close()
  const db = openSqliteDb({ file, mustExist: true })
  expect(db.prepare('SELECT seq FROM audit_head WHERE id = 1').get()).toEqual({ seq: 0 })
  db.close()
  const again = openExistingSqlite(file)
  again.exec('PRAGMA wal_checkpoint(PASSIVE)')
  again.close()
})

it('a store whose data directory is removed before its writer thread is up leaves nothing behind', async () => {
  const dir = join(tempDir(), 'data')
  const store = new SqliteStore({ file: join(dir, 'audit.db') })
  // In the same turn: the thread starts, and opens the file, only after it.
  rmSync(dir, { recursive: true, force: true })
  const thread = store.writerThread!
  // It ends, refused; a thread that made the file anew keeps running (bounded by the timer).
  // (Not events.once: it would reject on the thread's 'error', which the store handles.)
  await Promise.race([new Promise((resolve) => thread.once('exit', resolve)), new Promise((resolve) => setTimeout(resolve, 2000))])
  await store.close().catch(() => { /* its writer is gone: that is the point */ })
  expect(existsSync(dir)).toBe(false)
})
