// On SIGTERM serve closes its listeners, waits shutdown_grace_seconds for the requests in flight, cuts the
// rest, then closes the store (src/server.ts). A request still running by then (waiting on IAM, say) reaches
// a closed store when it records or reads. That is the broker going away, not a bug: like any outage it is
// refused 503 temporarily_unavailable with Retry-After (RFC 6749 §4.1.2.1), so a client that still listens
// retries later or elsewhere, and the log says "refused for an audit store outage" rather than "unhandled
// error". Before, it was a plain Error: 500 server_error.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/audit_log.ts'
import { AuditStoreUnavailable } from '../../src/errors.ts'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'
import { exchangeForm, IDTOKEN, startE2e, type E2e } from '../support/broker_e2e.ts'

const dir = mkdtempSync(join(tmpdir(), 'ctb-closed-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const event: AuditEvent = { type: 'token.issued', time: 1_700_000_000, jti: 'j-1' }

function expectOutage(err: unknown, name: string): void {
  expect(err, name).toBeInstanceOf(AuditStoreUnavailable)
  expect((err as AuditStoreUnavailable).status, name).toBe(503)
  expect((err as AuditStoreUnavailable).message, name).toMatch(/audit store is closed/)
}

describe('a store that has closed refuses writes and reads as an outage', () => {
  it.each([
    ['SQLite, writer thread', () => new SqliteStore({ file: join(dir, 'thread.db') })],
    ['SQLite, inline writer', () => new SqliteStore({ file: join(dir, 'inline.db'), writer: 'inline' })],
    ['memory', () => new MemoryStore()],
  ])('%s', async (_name, open) => {
    const store = open()
    await store.record(event)
    await store.close()
    expectOutage(await store.record({ ...event, jti: 'j-2' }).then(() => undefined, (e: unknown) => e), 'record')
    expectOutage(await store.writeCredential({ action: 'revoke', user: 'ada', provider: 'cms', revokedAt: 1, revokedBy: 'admin' }, event).then(() => undefined, (e: unknown) => e), 'writeCredential')
    if (store instanceof SqliteStore) {
      expectOutage(await store.readCredential('ada', 'cms').then(() => undefined, (e: unknown) => e), 'readCredential')
      expectOutage(await store.query({ jti: 'j-1', limit: 10 }).then(() => undefined, (e: unknown) => e), 'query')
    }
    // A second close (a stop that raced another) is no error.
    await store.close()
  })
})

describe('POST /token after the store closed under a running broker', () => {
  let e: E2e | undefined
  afterEach(async () => { await e?.close(); e = undefined })

  it('answers 503 temporarily_unavailable with Retry-After and no token, not 500', async () => {
    e = await startE2e()
    const robot = await e.robot('ctb-monitoring')
    const form = exchangeForm(robot, 'monitoring', { requested_token_type: IDTOKEN })
    expect((await e.post('/token', form)).status).toBe(200)
    // What the end of a SIGTERM drain does to a request it could not wait for.
    await e.broker.services.store.close()
    const res = await e.post('/token', form)
    expect(res.status, JSON.stringify(res.body)).toBe(503)
    expect(res.body.error).toBe('temporarily_unavailable')
    expect(res.body).not.toHaveProperty('access_token')
    expect(res.headers['retry-after']).toMatch(/^[1-9]\d*$/)
  })
})
