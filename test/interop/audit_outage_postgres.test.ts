// A PostgreSQL audit store that has gone away (the server stopped: its backends terminated, then every
// connection refused) is an outage. POST /token says so as RFC 6749 §4.1.2.1 names it:
// `temporarily_unavailable`, with HTTP 503 and Retry-After (RFC 9110 §15.6.4, §10.2.3), and no token:
// nothing leaves without its committed record.
import { request } from 'node:https'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { exchangeForm, IDTOKEN, startE2e, type E2e } from '../support/broker_e2e.ts'
import { startPostgres, type TestPostgres } from '../support/postgres.ts'
import { parsePrometheusText, sampleValue, type Sample } from '../support/prometheus_text.ts'

let server: TestPostgres
let e: E2e
beforeAll(async () => {
  server = await startPostgres()
  const dsn = await server.createDatabase('outage')
  e = await startE2e({ CTB_AUDIT_STORE: 'postgres', CTB_AUDIT_POSTGRES_DSN: dsn })
})
afterAll(async () => {
  try { await e?.close() } finally { await server?.stop() }
})

describe('PostgreSQL audit store outage on POST /token', () => {
  it('issues while the server runs, then answers 503 temporarily_unavailable with Retry-After and no token once it is stopped', async () => {
    const form = exchangeForm(await e.robot('ctb-monitoring'), 'monitoring', { requested_token_type: IDTOKEN })
    const ok = await e.post('/token', form)
    expect(ok.status, JSON.stringify(ok.body)).toBe(200)
    // One revocation in force, so the gauge has a value of its own to report through the outage.
    await e.broker.services.revocations.revoke({ kind: 'jti', value: 'outage-test-token' }, { principal: 'test' })
    server.halt()
    try {
      // Twice: the first request may meet a pooled connection the stop terminated, the next is refused outright.
      for (let i = 0; i < 2; i++) {
        const res = await e.post('/token', form)
        expect(res.status, JSON.stringify(res.body)).toBe(503)
        expect(res.body.error).toBe('temporarily_unavailable')
        expect(res.body).not.toHaveProperty('access_token')
        expect(res.headers['cache-control']).toBe('no-store')
        expect(res.headers['retry-after']).toMatch(/^[1-9]\d*$/)
      }
      // The admin watching the outage scrapes the failures it counts, while it lasts (docs/audit.md), and
      // the revocations the broker still enforces: from memory, as the scrape reads no store. Scraped before
      // the server is back, or a store read would succeed and the test could not fail.
      const scrape = await scrapeMetrics()
      expect(scrape.status, scrape.text.slice(0, 200)).toBe(200)
      const samples = parsePrometheusText(scrape.text)
      expect(sampleValue(samples, 'ctb_audit_commit_failures_total')).toBe(2)
      // The two 503s, as refusals an admin watching denials sees (docs/metrics.md).
      expect(sampleValue(samples, 'ctb_tokens_denied_total', { role: 'none', kind: 'none', site: 'none', reason: 'store_unavailable' })).toBe(2)
      expect(revocationGauge(samples)).toEqual({ jti: 1, sub: 0, role: 0, site: 0, client: 0, 'pilot-job': 0 })
    } finally {
      server.start()
    }
  })

  it('answers a scrape at once, revocation gauge included, while the server is frozen', async () => {
    // A server that stops answering gives no error: a scrape that read the store would wait out
    // query_timeout_seconds (30 s by default, as here), or a bound of its own while the abandoned read kept
    // a pool connection. The gauge is served from memory, so neither happens.
    // First an issuance, so the pool holds an open connection when the server freezes.
    const form = exchangeForm(await e.robot('ctb-monitoring'), 'monitoring', { requested_token_type: IDTOKEN })
    let warm = false
    for (let i = 0; i < 20 && !warm; i++) {
      warm = (await e.post('/token', form)).status === 200
      if (!warm) await new Promise((r) => setTimeout(r, 250))
    }
    expect(warm, 'the store was never read after the restart').toBe(true)
    server.freeze()
    let scrape: { status: number; text: string; ms: number }
    try {
      scrape = await scrapeMetrics()
    } finally {
      server.thaw()
    }
    console.log(`frozen PostgreSQL: /metrics answered ${scrape.status} in ${scrape.ms} ms`)
    expect(scrape.status, scrape.text.slice(0, 200)).toBe(200)
    // Well under the 2 s a store read at scrape time was given before it was abandoned.
    expect(scrape.ms).toBeLessThan(1500)
    // The revocation of the first test, still in force.
    expect(revocationGauge(parsePrometheusText(scrape.text)).jti).toBe(1)
  })

  it('is no write path lost for good: serve keeps answering 503 while the server is down, and issues again once it is back', async () => {
    // serve exits (status 70) only when the store says its write path has stopped for good; a pool that
    // reconnects never does, so a PostgreSQL outage, however long, is waited out by the clients' retries.
    const heard: string[] = []
    e.broker.services.store.onWritePathStopped((reason) => heard.push(reason))
    const form = exchangeForm(await e.robot('ctb-monitoring'), 'monitoring', { requested_token_type: IDTOKEN })
    server.halt()
    try {
      for (let i = 0; i < 2; i++) expect((await e.post('/token', form)).status).toBe(503)
      expect(e.broker.services.store.writeHealth().stopped).toBeUndefined()
      // Live throughout: an orchestrator's liveness probe must not kill a broker that is only waiting the
      // outage out; readiness is what takes it out of rotation.
      expect(await e.get('/healthz')).toMatchObject({ status: 200, body: { status: 'ok' } })
      expect((await e.get('/readyz')).status).toBe(503)
    } finally {
      server.start()
    }
    const ok = await e.post('/token', form)
    expect(ok.status, JSON.stringify(ok.body)).toBe(200)
    expect(typeof ok.body.access_token).toBe('string')
    expect(heard).toEqual([])
  })
})

/** ctb_revocations_active by kind. */
function revocationGauge(samples: Sample[]): Record<string, number | undefined> {
  return Object.fromEntries(['jti', 'sub', 'role', 'site', 'client', 'pilot-job'].map((kind) => [kind, sampleValue(samples, 'ctb_revocations_active', { kind })]))
}

/** GET /metrics as Prometheus would, giving up after its default scrape_timeout (10 s). */
function scrapeMetrics(): Promise<{ status: number; text: string; ms: number }> {
  const started = Date.now()
  return new Promise((resolve, reject) => {
    const req = request(`${e.broker.url}/metrics`, { ca: e.ca, timeout: 10_000 }, (res) => {
      let text = ''
      res.setEncoding('utf8').on('data', (c: string) => { text += c }).on('end', () => resolve({ status: res.statusCode ?? 0, text, ms: Date.now() - started }))
    })
    req.on('timeout', () => req.destroy(new Error('no /metrics answer within 10 s (Prometheus default scrape_timeout)')))
    req.on('error', reject).end()
  })
}
