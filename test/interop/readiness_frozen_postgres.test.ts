// /readyz on a PostgreSQL server that stopped answering (its processes SIGSTOPped: a hung host or a network
// black hole). Each probe gives up its one-record read after 2 s and answers 503, but a read it gave up on
// keeps its pool connection until query_timeout_seconds (30 s here, the default): a read per probe, with
// load balancers probing every few seconds, would take the pool's 4 connections from the token requests.
// Probes during the freeze share one read (docs/audit.md).
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { AuditPage, AuditQuery } from '../../src/audit/audit_log.ts'
import { startE2e, type E2e } from '../support/broker_e2e.ts'
import { startPostgres, type TestPostgres } from '../support/postgres.ts'

let server: TestPostgres
let e: E2e
beforeAll(async () => {
  server = await startPostgres()
  const dsn = await server.createDatabase('readiness_frozen')
  // No revocation refresh during the test: only the probes read the store while it is frozen.
  e = await startE2e({ CTB_AUDIT_STORE: 'postgres', CTB_AUDIT_POSTGRES_DSN: dsn, CTB_REVOCATION_REFRESH_SECONDS: '3600' })
})
afterAll(async () => {
  try { await e?.close() } finally { await server?.stop() }
})

describe('/readyz while PostgreSQL is frozen', () => {
  it('holds one store read however many probes come, and is ready again once the server answers', async () => {
    // Count the reads the running broker has waiting on the server: each holds a pool connection.
    const store = e.broker.services.store
    const query = store.query.bind(store)
    let inFlight = 0
    let most = 0
    store.query = (q: AuditQuery): Promise<AuditPage> => {
      most = Math.max(most, ++inFlight)
      return query(q).finally(() => { inFlight-- })
    }
    // Warm: a read answered, so the pool holds an open connection when the server freezes.
    expect((await e.get('/readyz')).status).toBe(200)
    most = 0
    server.freeze()
    let answers: Array<{ status: number; body: Record<string, unknown> }>
    try {
      // Three load balancers at once, then two more probes after they gave up.
      answers = await Promise.all([e.get('/readyz'), e.get('/readyz'), e.get('/readyz')])
      answers.push(await e.get('/readyz'), await e.get('/readyz'))
      expect(inFlight).toBe(1)
    } finally {
      server.thaw()
    }
    for (const a of answers) {
      expect(a.status).toBe(503)
      expect(a.body).toMatchObject({ checks: { audit: 'the audit store did not answer in time' } })
    }
    expect(most).toBe(1)
    // The held read is answered once the server runs again: ready without a restart (bounded wait).
    let ready = false
    for (let i = 0; i < 20 && !ready; i++) {
      ready = (await e.get('/readyz')).status === 200
      if (!ready) await new Promise((r) => setTimeout(r, 250))
    }
    expect(ready).toBe(true)
  })
})
