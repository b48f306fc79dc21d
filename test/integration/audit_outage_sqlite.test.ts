// An audit store that cannot commit right now is an outage, and the token endpoint says so the way RFC 6749
// §4.1.2.1 names it: `temporarily_unavailable`, here with HTTP 503 and Retry-After (RFC 9110 §15.6.4,
// §10.2.3), so that pilots, credmons and provisioning retry. Fail closed stays exact: no token leaves
// without its committed record. A store failure that is no outage (a constraint the write broke: a bug or
// a damaged database) stays 500 server_error.
import { DatabaseSync } from 'node:sqlite'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import type { SqliteStore } from '../../src/storage/sqlite_store.ts'
import { exchangeForm, IDTOKEN, startE2e, type E2e } from '../support/broker_e2e.ts'

async function issuedCount(e: E2e): Promise<number> {
  return (await e.broker.services.store.query({ limit: 1000, type: 'token.issued' })).records.length
}

function expectOutage(res: { status: number; headers: Record<string, string>; body: Record<string, unknown> }): void {
  expect(res.status, JSON.stringify(res.body)).toBe(503)
  expect(res.body.error).toBe('temporarily_unavailable')
  expect(res.body).not.toHaveProperty('access_token')
  expect(res.headers['cache-control']).toBe('no-store')
  // RFC 9110 §10.2.3: delay-seconds, a non-negative integer.
  expect(res.headers['retry-after']).toMatch(/^[1-9]\d*$/)
}

describe('SQLite audit store outage on POST /token', () => {
  let e: E2e | undefined
  afterEach(async () => { await e?.close(); e = undefined })

  it('answers 503 temporarily_unavailable with Retry-After, and no token, once the writer thread is gone', async () => {
    e = await startE2e()
    const robot = await e.robot('ctb-monitoring')
    const form = exchangeForm(robot, 'monitoring', { requested_token_type: IDTOKEN })
    expect((await e.post('/token', form)).status).toBe(200)
    await (e.broker.services.store as SqliteStore).writerThread!.terminate()
    expectOutage(await e.post('/token', form))
  })

  it('answers /healthz 503 naming the cause once the writer thread is gone: the process is no longer live', async () => {
    // Liveness fails only for a write path stopped for good (serve then exits 70 for its supervisor to
    // restart it); an outage the store recovers from leaves it 200 and shows only in /readyz.
    e = await startE2e()
    const before = await e.get('/healthz')
    expect(before.status).toBe(200)
    expect(before.body).toEqual({ status: 'ok' })
    await (e.broker.services.store as SqliteStore).writerThread!.terminate()
    const after = await e.get('/healthz')
    expect(after.status).toBe(503)
    // Fixed words, as /readyz gives (docs/audit.md): /healthz is unauthenticated, and the thread's own
    // error can name the database file; that detail is in the log line serve writes as it stops.
    expect(after.body).toEqual({ status: 'failing', reason: 'the audit writer thread has stopped' })
  })

  it('answers 503 while another connection holds the write lock (SQLITE_BUSY), and issues again once it is released', async () => {
    e = await startE2e()
    const robot = await e.robot('ctb-monitoring')
    const form = exchangeForm(robot, 'monitoring', { requested_token_type: IDTOKEN })
    // One issuance first: the writer thread has then opened the database (taking the lock before it has
    // would stop the thread at its start, another case: the first test's).
    expect((await e.post('/token', form)).status).toBe(200)
    const before = await issuedCount(e)
    const other = new DatabaseSync(join(e.env.CTB_DATA_DIR!, 'audit.db'))
    try {
      other.exec('PRAGMA busy_timeout = 0')
      other.exec('BEGIN IMMEDIATE')
      // The writer waits out its busy timeout (5 s by default), then gives up: SQLITE_BUSY.
      expectOutage(await e.post('/token', form))
      // A lock another process holds is waited out, not a write path lost: still live (no status 70 to come).
      expect(await e.get('/healthz')).toMatchObject({ status: 200, body: { status: 'ok' } })
      expect(e.broker.services.store.writeHealth().stopped).toBeUndefined()
      other.exec('ROLLBACK')
    } finally {
      other.close()
    }
    expect(await issuedCount(e)).toBe(before)
    const ok = await e.post('/token', form)
    expect(ok.status, JSON.stringify({ body: ok.body, health: e.broker.services.store.writeHealth() })).toBe(200)
    expect(typeof ok.body.access_token).toBe('string')
    expect(await issuedCount(e)).toBe(before + 1)
  }, 20_000)

  it('keeps 500 server_error, and no token, for a store failure that is no outage (a write the schema refuses)', async () => {
    e = await startE2e()
    const robot = await e.robot('ctb-monitoring')
    const form = exchangeForm(robot, 'monitoring', { requested_token_type: IDTOKEN })
    const other = new DatabaseSync(join(e.env.CTB_DATA_DIR!, 'audit.db'))
    try {
      other.exec("CREATE TRIGGER refuse_insert BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'injected constraint failure'); END")
      const res = await e.post('/token', form)
      expect(res.status).toBe(500)
      expect(res.body).toEqual({ error: 'server_error' })
      expect(res.headers['retry-after']).toBeUndefined()
      other.exec('DROP TRIGGER refuse_insert')
    } finally {
      other.close()
    }
  })
})
