import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, expect, it } from 'vitest'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'

const dir = mkdtempSync(join(tmpdir(), 'ctb-sqlite-mode-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

// The audit database holds the chain, sealed refresh tokens and console sessions. SQLite creates a new file
// with the process umask (0644 under the usual 022) and gives its -wal and -shm files the database file's
// mode, so each was readable by every local user wherever the data directory is not 0700 (audit.sqlite.file
// may point outside it). The broker's other secrets are 0600 (docs/architecture.md).
it('creates a new audit database owner-only, whatever the umask, and its WAL too', async () => {
  const file = join(dir, 'audit.db')
  const old = process.umask(0o022)
  let store: SqliteStore | undefined
  try {
    store = new SqliteStore({ file, writer: 'inline' })
    await store.record({ type: 'token.issued', time: 1_800_000_000, jti: 'j-1', caller: { sub: 'alice' }, decision: 'allow' })
    expect(statSync(file).mode & 0o777).toBe(0o600)
    expect(statSync(`${file}-wal`).mode & 0o777).toBe(0o600)
  } finally {
    process.umask(old)
    await store?.close()
  }
})

it('leaves the mode of an existing database file as the operator set it', async () => {
  const file = join(dir, 'shared.db')
  writeFileSync(file, '', { mode: 0o640 })
  const store = new SqliteStore({ file, writer: 'inline' })
  await store.close()
  expect(statSync(file).mode & 0o777).toBe(0o640)
})
