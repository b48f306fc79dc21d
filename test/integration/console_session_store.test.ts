import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { expect, it } from 'vitest'
import { MemoryStore } from '../../src/storage/memory_store.ts'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
import { tempDir } from '../support/tmp.ts'
import { consoleSessionStoreContract } from './console_session_store.contract.ts'

consoleSessionStoreContract('memory', async () => new MemoryStore())
consoleSessionStoreContract('sqlite (inline writer)', async () => new SqliteStore({ file: join(tempDir(), 'a.db'), writer: 'inline' }))
consoleSessionStoreContract('sqlite (writer thread)', async () => new SqliteStore({ file: join(tempDir(), 'a.db') }))

it('adds the console sessions table to an SQLite file of the schema before it, keeping its records', async () => {
  const file = join(tempDir(), 'a.db')
  const old = new SqliteStore({ file, writer: 'inline' })
  await old.record({ type: 'token.issued', time: 1_800_000_000, decision: 'allow' })
  await old.close()
  const raw = new DatabaseSync(file)
  raw.exec('DROP TABLE console_sessions; PRAGMA user_version = 7')
  raw.close()
  const store = new SqliteStore({ file, writer: 'inline' })
  try {
    const session = { idSha256: 'd', principal: 'alice', createdAt: 1, lastSeenAt: 1, expiresAt: 2, sealed: 'v1.x' }
    await store.writeConsoleSession({ action: 'create', session, now: 1, max: 10, sweep: 10 })
    expect(await store.readConsoleSession('d')).toEqual(session)
    expect(await store.verify()).toMatchObject({ ok: true, records: 1 })
  } finally {
    await store.close()
  }
  const check = new DatabaseSync(file)
  expect(check.prepare('PRAGMA user_version').get()).toEqual({ user_version: 16 })
  check.close()
})

it('adds last_seen_at to the sessions of a file from before the idle timeout: a session of then counts from its sign-in', async () => {
  const file = join(tempDir(), 'a.db')
  const old = new SqliteStore({ file, writer: 'inline' })
  await old.close()
  const raw = new DatabaseSync(file)
  raw.exec(`DROP TABLE console_sessions;
    CREATE TABLE console_sessions (id_sha256 TEXT PRIMARY KEY, principal TEXT NOT NULL, created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL, sealed TEXT NOT NULL);
    INSERT INTO console_sessions VALUES ('d', 'alice', 100, 900, 'v1.x');
    PRAGMA user_version = 14`)
  raw.close()
  const store = new SqliteStore({ file, writer: 'inline' })
  try {
    expect(await store.readConsoleSession('d')).toEqual({ idSha256: 'd', principal: 'alice', createdAt: 100, lastSeenAt: 100, expiresAt: 900, sealed: 'v1.x' })
  } finally {
    await store.close()
  }
})
