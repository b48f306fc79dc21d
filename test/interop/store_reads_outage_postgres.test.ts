// The credmon's job-token read, the Vault listener and a pilot renewal on another replica read the store
// before they write anything: the credential row, the pilot's redemption record. With the PostgreSQL server
// stopped, that read is the first thing to fail, so it must be the same outage the failed write is:
// RFC 6749 §4.1.2.1 `temporarily_unavailable` (503 with Retry-After), not a 500 the clients take for a
// broken broker (docs/job-credentials.md: "503 temporarily_unavailable with Retry-After when the store is
// out of reach").
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AuditStoreUnavailable } from '../../src/errors.ts'
import { PostgresStore } from '../../src/storage/postgres_store.ts'
import { startPostgres, type TestPostgres } from '../support/postgres.ts'

let server: TestPostgres
let store: PostgresStore
beforeAll(async () => {
  server = await startPostgres()
  store = await PostgresStore.open({ dsn: await server.createDatabase('reads'), connectTimeoutMs: 2000 })
})
afterAll(async () => {
  try { await store?.close() } finally { await server?.stop() }
})

describe('a PostgreSQL store that has closed (serve stopping) refuses as an outage', () => {
  it('rejects a write and a read after close() with AuditStoreUnavailable, not the pool\'s own error', async () => {
    const closed = await PostgresStore.open({ dsn: await server.createDatabase('closed'), connectTimeoutMs: 2000 })
    await closed.close()
    for (const [name, op] of [
      ['record', () => closed.record({ type: 'token.issued', time: 1_700_000_000, jti: 'j-1' })],
      ['readCredential', () => closed.readCredential('ada', 'cms')],
      ['verifyRevocations', () => closed.verifyRevocations()],
    ] as Array<[string, () => Promise<unknown>]>) {
      const err = await op().then(() => undefined, (e: unknown) => e)
      expect(err, name).toBeInstanceOf(AuditStoreUnavailable)
      expect((err as AuditStoreUnavailable).message, name).toMatch(/audit store is closed/)
    }
  })
})

describe('PostgreSQL stopped under the store: its reads fail as an outage', () => {
  it('reads answer while the server runs, then reject with AuditStoreUnavailable (503, Retry-After) once it is stopped', async () => {
    expect(await store.readCredential('ada', 'cms')).toBeUndefined()
    await server.stop()
    const reads: Array<[string, () => Promise<unknown>]> = [
      ['readCredential', () => store.readCredential('ada', 'cms')],
      ['credentialByVaultToken', () => store.credentialByVaultToken('0'.repeat(64))],
      ['query', () => store.query({ jti: 'j-1', limit: 10 })],
      ['readConsoleSession', () => store.readConsoleSession('0'.repeat(64))],
      ['countLiveCredentials', () => store.countLiveCredentials('ada', 'cms')],
    ]
    for (const [name, read] of reads) {
      const err = await read().then(() => undefined, (e: unknown) => e)
      expect(err, name).toBeInstanceOf(AuditStoreUnavailable)
      expect((err as AuditStoreUnavailable).status, name).toBe(503)
      expect((err as AuditStoreUnavailable).retryAfter, name).toBeGreaterThanOrEqual(1)
      // The operator's line (the log, a CLI command's one line) says a read failed, not a commit.
      expect((err as AuditStoreUnavailable).message, name).toMatch(/^the audit store cannot be read right now \(.+\)$/)
    }
  })
})
