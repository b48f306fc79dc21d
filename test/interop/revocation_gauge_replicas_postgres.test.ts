// Two brokers (replicas) on one real PostgreSQL server started for this file: a revocation one replica
// commits reaches the other's in-memory list, and so its ctb_revocations_active, at that replica's next
// refresh of the table (revocation.refresh_seconds), not at once (docs/metrics.md).
import { request } from 'node:https'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { RunningBroker } from '../../src/server.ts'
import { startE2e, startReplica, type E2e } from '../support/broker_e2e.ts'
import { startPostgres, type TestPostgres } from '../support/postgres.ts'
import { parsePrometheusText, sampleValue } from '../support/prometheus_text.ts'

const REFRESH_SECONDS = 1

let server: TestPostgres
let a: E2e
let b: RunningBroker
beforeAll(async () => {
  server = await startPostgres()
  const dsn = await server.createDatabase('revocation_gauge_replicas')
  a = await startE2e({ CTB_AUDIT_STORE: 'postgres', CTB_AUDIT_POSTGRES_DSN: dsn, CTB_REVOCATION_REFRESH_SECONDS: String(REFRESH_SECONDS) })
  b = await startReplica(a)
})
afterAll(async () => {
  try {
    await b?.close()
    await a?.close()
  } finally { await server?.stop() }
})

function jtiGauge(): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    const req = request(`${a.broker.url}/metrics`, { ca: a.ca, timeout: 10_000 }, (res) => {
      let text = ''
      res.setEncoding('utf8').on('data', (c: string) => { text += c }).on('end', () => resolve(sampleValue(parsePrometheusText(text), 'ctb_revocations_active', { kind: 'jti' })))
    })
    req.on('timeout', () => req.destroy(new Error('no /metrics answer within 10 s')))
    req.on('error', reject).end()
  })
}

describe('ctb_revocations_active across replicas', () => {
  it('counts a revocation another replica committed once this replica has re-read the table', async () => {
    expect(await jtiGauge()).toBe(0)
    await b.services.revocations.revoke({ kind: 'jti', value: 'revoked-at-replica-b' }, { principal: 'test' })
    await b.services.revocations.revoke({ kind: 'jti', value: 'also-revoked-at-replica-b' }, { principal: 'test' })
    // Bounded: a few refresh periods.
    const deadline = Date.now() + 5 * REFRESH_SECONDS * 1000
    let seen = await jtiGauge()
    while (seen !== 2 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100))
      seen = await jtiGauge()
    }
    expect(seen).toBe(2)
  })
})
