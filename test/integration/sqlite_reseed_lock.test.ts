// The issuance-horizon reseed runs once at the start of serve, on the store's own connection, before the
// broker listens: it waits there for another process's write lock (an admin's `audit prune`, a CLI `revoke`,
// a backup) up to the writer's busy timeout, which holds up nothing but the start (docs/audit.md). A lock
// held past that failed the start as "internal error: database is locked", exit 70, a bug's exit, for a
// busy database: it is an operator's one line (OperatorError), naming what to do.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { afterAll, expect, it } from 'vitest'
import { OperatorError } from '../../src/errors.ts'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'

const dir = mkdtempSync(join(tmpdir(), 'ctb-reseedlock-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const BUSY_MS = 500

it('a reseed that meets another process\'s write lock past the busy timeout fails the start in one operator\'s line', async () => {
  const file = join(dir, 'audit.db')
  const store = new SqliteStore({ file, busyTimeoutMs: BUSY_MS })
  const holder = new DatabaseSync(file)
  try {
    await store.record({ type: 'token.issued', time: 1_700_000_000, jti: 'j-1', exp: 1_700_000_600 })
    holder.exec('BEGIN IMMEDIATE')
    const t = performance.now()
    const err = await store.reseedHorizons().then(() => undefined, (e: unknown) => e)
    const waited = performance.now() - t
    console.log(`reseed under another connection's write lock (busy wait ${BUSY_MS} ms): waited ${Math.round(waited)} ms on the event loop`)
    expect(waited).toBeGreaterThanOrEqual(BUSY_MS - 10)
    expect(err).toBeInstanceOf(OperatorError)
    expect((err as OperatorError).code).toBe('EAUDITSTORE')
    expect((err as Error).message).toMatch(/database is locked/)
    expect((err as Error).message).not.toMatch(/\n/)
    holder.exec('ROLLBACK')
    // The lock gone, the reseed runs and raises the token horizon to the record's exp.
    await store.reseedHorizons()
    expect((await store.issuanceHorizon()).token).toEqual({ exp: 1_700_000_600, lifetime: 600 })
  } finally {
    if (holder.isTransaction) holder.exec('ROLLBACK')
    holder.close()
    await store.close()
  }
})
