// docs/audit.md: a store out of reach for now is an outage, answered 503 temporarily_unavailable with
// Retry-After (RFC 6749 §4.1.2.1), on reads as on writes: the credmon's job-token read, a pilot renewal's
// lookups, the revocation list, the admin API and the console read the store before (or instead of)
// writing. Here the SQLite file is really locked: another process holds its WAL index as a process in
// recovery does (test/support/sqlite_recovery_lock.ts), so every read meets SQLITE_BUSY_RECOVERY and
// gives up after the busy timeout. Before, those reads threw SQLite's own error: a 500 server_error.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { AuditStoreUnavailable } from '../../src/errors.ts'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
import { useCredentialsApp } from '../support/credentials_app.ts'
import { holdWalRecovery } from '../support/sqlite_recovery_lock.ts'

const dir = mkdtempSync(join(tmpdir(), 'ctb-sqlread-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
// The job-credential routes as serve wires them, on their own SQLite file (inline writer, 5 s busy timeout).
const t = await useCredentialsApp()

function expectReadOutage(err: unknown, name: string): void {
  expect(err, name).toBeInstanceOf(AuditStoreUnavailable)
  expect((err as AuditStoreUnavailable).status, name).toBe(503)
  expect((err as AuditStoreUnavailable).retryAfter, name).toBeGreaterThanOrEqual(1)
  // The operator's line says a read failed, and what SQLite said.
  expect((err as AuditStoreUnavailable).message, name).toMatch(/^the audit store cannot be read right now \(.*database is locked.*\)$/)
}

describe('a SQLite store whose file another process holds locked: its reads fail as an outage', () => {
  it('rejects every read with AuditStoreUnavailable (503, Retry-After), and reads again once the lock is gone', async () => {
    const store = new SqliteStore({ file: join(dir, 'audit.db'), writer: 'inline', busyTimeoutMs: 50 })
    try {
      await store.record({ type: 'token.issued', time: 1_700_000_000, jti: 'j-1', role: 'monitoring', site: 'east' })
      const reads: Array<[string, () => Promise<unknown>]> = [
        ['readCredential', () => store.readCredential('ada', 'cms')],
        ['credentialByVaultToken', () => store.credentialByVaultToken('0'.repeat(64))],
        ['listCredentials', () => store.listCredentials()],
        ['countLiveCredentials', () => store.countLiveCredentials('ada', 'cms')],
        ['readConsoleSession', () => store.readConsoleSession('0'.repeat(64))],
        ['listRevocations', () => store.listRevocations({ activeAt: 1_700_000_000 })],
        ['roleGenerations', () => store.roleGenerations()],
        ['issuanceHorizon', () => store.issuanceHorizon()],
        ['query by jti', () => store.query({ jti: 'j-1', limit: 10 })],
        ['query by site', () => store.query({ site: 'east', limit: 10 })],
        ['countByTime', () => store.countByTime({ from: 1_699_999_000, to: 1_700_001_000, bucketSeconds: 60 })],
        ['countDenialReasons', () => store.countDenialReasons({ from: 1_699_999_000, to: 1_700_001_000 })],
        ['countLive', () => store.countLive({ now: 1_700_000_000, since: 1_699_999_000 })],
        ['macsBeganAt', () => store.macsBeganAt()],
        ['verifyRevocations', () => store.verifyRevocations()],
        ['verify', () => store.verify()],
      ]
      const lock = await holdWalRecovery(join(dir, 'audit.db'))
      try {
        for (const [name, read] of reads) expectReadOutage(await read().then(() => undefined, (e: unknown) => e), name)
      } finally {
        await lock.release()
      }
      expect((await store.query({ jti: 'j-1', limit: 10 })).records).toHaveLength(1)
    } finally {
      await store.close()
    }
  })
})

describe('the routes that read a locked SQLite store answer 503 with Retry-After', () => {
  it('answers a credd\'s job-token read and an admin GET 503 temporarily_unavailable, never 500', async () => {
    const reg = await t.register(await t.userToken({ preferred_username: 'ines' }), { provider: 'cms' })
    expect(reg.status).toBe(201)
    const lock = await holdWalRecovery(t.dbFile)
    try {
      for (const res of [
        await t.jobToken('ines', 'cms', t.creddToken()),
        await t.app.request('/v1/revocations', { headers: { authorization: `Bearer ${t.adminToken}` } }),
      ]) {
        expect(res.status).toBe(503)
        expect(res.headers.get('retry-after')).toMatch(/^[1-9]\d*$/)
        const body = await res.json() as Record<string, unknown>
        expect(body.error).toBe('temporarily_unavailable')
        expect(JSON.stringify(body)).not.toContain('locked')
      }
    } finally {
      await lock.release()
    }
    expect((await t.jobToken('ines', 'cms', t.creddToken())).status).toBe(200)
  }, 30_000)
})
