// A stop closes the store once the drain's grace is over (src/server.ts), whatever reads are still running.
// A read that spans event-loop turns (an overview's counts, an audit page in slices, an export) may be
// between two of its slices then: its next slice meets a closed connection. That is the broker going away,
// as for a read that starts after the close (store_closed_outage.test.ts): 503 with Retry-After
// (AuditStoreUnavailable, "audit store is closed"), not node:sqlite's "database is not open", a 500.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, expect, it } from 'vitest'
import { AuditStoreUnavailable } from '../../src/errors.ts'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'

const dir = mkdtempSync(join(tmpdir(), 'ctb-closed-mid-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const T0 = 1_700_000_000

it.each([
  ['countByTime', (s: SqliteStore) => s.countByTime({ from: T0, to: T0 + 100, bucketSeconds: 60 })],
  ['query by site', (s: SqliteStore) => s.query({ site: 'nowhere', limit: 10 })],
  ['scan', async (s: SqliteStore) => { for await (const r of s.scan()) void r }],
])('a %s still running when the store closes fails as the store closed', async (name, read) => {
  // Slices of 2 records over 40 records in 40 seconds: the read takes many turns.
  const store = new SqliteStore({ file: join(dir, `${name}.db`), writer: 'inline', sliceRows: 2 })
  for (let i = 0; i < 40; i++) await store.record({ type: 'token.issued', time: T0 + i, jti: `j-${i}`, role: 'monitoring', site: 'east' })
  const running = read(store).then(() => undefined, (e: unknown) => e)
  await store.close()
  const err = await running
  expect(err, name).toBeInstanceOf(AuditStoreUnavailable)
  expect((err as AuditStoreUnavailable).status).toBe(503)
  expect((err as Error).message).toMatch(/audit store is closed/)
})
