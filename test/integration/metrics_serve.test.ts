// GET /metrics as `serve` wires it (src/services.ts, src/server.ts): POST /token on the fast path is
// counted, and the bearer token file is created and required.
import { request } from 'node:https'
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { exchangeForm, IDTOKEN, startE2e, type E2e } from '../support/broker_e2e.ts'
import { parsePrometheusText, sampleValue } from '../support/prometheus_text.ts'

let e: E2e
let tokenDir: string
let tokenFile: string

function scrape(token?: string): Promise<{ status: number; type: string; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${e.broker.url}/metrics`, { ca: e.ca, timeout: 10_000, headers: token ? { authorization: `Bearer ${token}` } : {} }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c) => { text += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), text }))
    })
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.on('error', reject)
    req.end()
  })
}

beforeAll(async () => {
  tokenDir = mkdtempSync(join(tmpdir(), 'ctb-metrics-token-'))
  tokenFile = join(tokenDir, 'metrics.token')
  e = await startE2e({ CTB_METRICS_AUTH: 'bearer', CTB_METRICS_BEARER_TOKEN_FILE: tokenFile })
})
afterAll(async () => {
  await e?.close()
  rmSync(tokenDir, { recursive: true, force: true })
})

describe('serve with metrics.auth bearer', () => {
  it('creates the token file (0600) and refuses a scrape without it', async () => {
    expect(statSync(tokenFile).mode & 0o077).toBe(0)
    expect((await scrape()).status).toBe(401)
    expect((await scrape('x'.repeat(40))).status).toBe(401)
  })

  it('counts an exchange served on the fast path, with the IAM calls it made', async () => {
    const token = readFileSync(tokenFile, 'utf8').trim()
    const res = await e.post('/token', exchangeForm(await e.robot('ctb-monitoring'), 'monitoring', { requested_token_type: IDTOKEN }))
    expect(res.status).toBe(200)
    const page = await scrape(token)
    expect(page.status).toBe(200)
    expect(page.type).toMatch(/^text\/plain; version=0\.0\.4/)
    const samples = parsePrometheusText(page.text)
    expect(sampleValue(samples, 'ctb_tokens_issued_total', { role: 'monitoring', kind: 'idtoken', site: 'none' })).toBe(1)
    expect(sampleValue(samples, 'ctb_token_request_duration_seconds_count', { status: '200' })).toBe(1)
    expect(sampleValue(samples, 'ctb_iam_request_duration_seconds_count', { call: 'jwks' })).toBeGreaterThanOrEqual(1)
    // SQLite's writer thread reports its commits too.
    expect(sampleValue(samples, 'ctb_audit_commit_batch_size_count')).toBeGreaterThanOrEqual(1)
    for (const key of ['idtoken', 'scitoken']) {
      expect(sampleValue(samples, 'ctb_signing_key_age_seconds', { key })).toBeGreaterThanOrEqual(0)
      expect(sampleValue(samples, 'ctb_signing_key_rotation_due_seconds', { key })).toBeGreaterThan(0)
    }
    expect(sampleValue(samples, 'process_resident_memory_bytes')).toBeGreaterThan(0)
  })
})
