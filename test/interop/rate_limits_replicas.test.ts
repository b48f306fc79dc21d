import { request } from 'node:https'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { RunningBroker } from '../../src/server.ts'
import { exchangeForm, IDTOKEN, startE2e, startReplica, type E2e } from '../support/broker_e2e.ts'
import { parsePrometheusText, sampleValue } from '../support/prometheus_text.ts'
import { startPostgres, type TestPostgres } from '../support/postgres.ts'

// Two brokers (replicas) on one real PostgreSQL 15 server started for this file on 127.0.0.1 (Debian
// package `postgresql`): a caller's requests to both count against one limit.
const LIMIT = 5

let server: TestPostgres
let dsn: string
let a: E2e
let b: RunningBroker
beforeAll(async () => {
  server = await startPostgres()
  dsn = await server.createDatabase('ratelimit_replicas')
  a = await startE2e({
    CTB_AUDIT_STORE: 'postgres', CTB_AUDIT_POSTGRES_DSN: dsn,
    CTB_RATE_LIMITS_CALLER_REQUESTS: String(LIMIT), CTB_RATE_LIMITS_CALLER_PER: '1h',
  })
  b = await startReplica(a)
})
afterAll(async () => {
  await b?.close()
  await a?.close()
  await server?.stop()
})

function post(url: string, form: Record<string, string | string[]>): Promise<{ status: number; retryAfter: string | undefined; body: Record<string, unknown> }> {
  const body = new URLSearchParams(Object.entries(form).flatMap(([k, v]) => (Array.isArray(v) ? v : [v]).map((x) => [k, x]))).toString()
  return new Promise((resolve, reject) => {
    const req = request(`${url}/token`, { method: 'POST', ca: a.ca, headers: { 'content-type': 'application/x-www-form-urlencoded' }, timeout: 10_000 }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c) => { text += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'], body: JSON.parse(text) as Record<string, unknown> }))
    })
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.on('error', reject)
    req.end(body)
  })
}

describe('caller limits on PostgreSQL hold across replicas', () => {
  it('counts a caller\'s requests to both replicas together: request LIMIT + 1 is refused wherever it lands', async () => {
    expect(a.broker.url).not.toBe(b.url)
    const robot = await a.robot('ctb-cloud-a-provisioner')
    const form = exchangeForm(robot, 'startd', { requested_token_type: IDTOKEN, host: 'ep-17.cloud-a.example.org' })
    const statuses: number[] = []
    // Alternating: three on the first replica, two on the second. Each alone stays under the limit.
    for (let i = 0; i < LIMIT; i++) statuses.push((await post(i % 2 === 0 ? a.broker.url : b.url, form)).status)
    expect(statuses).toEqual(Array(LIMIT).fill(200))

    const refused = await post(b.url, form)
    expect(refused.status).toBe(429)
    expect(refused.body).toEqual({ error: 'slow_down', error_description: expect.stringMatching(/^too many requests from this caller: at most 5 per 3600 s/) })
    expect(refused.retryAfter).toMatch(/^[1-9]\d*$/)
    expect(Number(refused.retryAfter)).toBeLessThanOrEqual(3600)
    // The first replica, which has not refused this caller yet, reads the same counter.
    expect((await post(a.broker.url, form)).status).toBe(429)

    // The counters live in the shared table; the audit records in the shared chain, one per replica.
    const rows = await queryRows('SELECT points FROM rate_limits WHERE key LIKE $1', ['caller:%'])
    expect(rows.map((r) => r.points)).toEqual([LIMIT + 2])
    const denied = (await a.broker.services.store.query({ limit: 1000, type: 'token.denied' })).records
    expect(denied.map((r) => r.event.reason?.slice(0, 10))).toEqual(['slow_down:', 'slow_down:'])
  })

  it('falls back to each replica\'s memory when the table fails, so a limit then holds per replica', async () => {
    await queryRows('ALTER TABLE rate_limits RENAME TO rate_limits_away')
    try {
      const robot = await a.robot('ctb-monitoring')
      const form = exchangeForm(robot, 'monitoring', { requested_token_type: IDTOKEN })
      for (const url of [a.broker.url, b.url]) {
        const statuses: number[] = []
        for (let i = 0; i <= LIMIT; i++) statuses.push((await post(url, form)).status)
        expect(statuses).toEqual([...Array(LIMIT).fill(200), 429])
      }
      // Each of the 2 × (LIMIT + 1) requests was counted in a replica's memory: /metrics says so, so that an
      // operator sees limits holding per replica only, not just one warning a minute in the log.
      const page = await scrape(a.broker.url)
      expect(sampleValue(parsePrometheusText(page), 'ctb_rate_limit_store_fallbacks_total')).toBe(LIMIT + 1)
    } finally {
      await queryRows('ALTER TABLE rate_limits_away RENAME TO rate_limits')
    }
  })
})

function scrape(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}/metrics`, { ca: a.ca, timeout: 10_000 }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c) => { text += c })
      res.on('end', () => resolve(text))
    })
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.on('error', reject)
    req.end()
  })
}

async function queryRows(sql: string, params: unknown[] = []): Promise<Array<Record<string, unknown>>> {
  const c = new pg.Client({ connectionString: dsn })
  await c.connect()
  try {
    return (await c.query(sql, params)).rows as Array<Record<string, unknown>>
  } finally {
    await c.end()
  }
}
