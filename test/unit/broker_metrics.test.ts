import { describe, expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/audit_log.ts'
import { fixedClock } from '../../src/lib/clock.ts'
import { BrokerMetrics } from '../../src/metrics/broker_metrics.ts'
import { iamCallOf } from '../../src/metrics/observe_pipeline.ts'
import type { PolicyContext } from '../../src/policy/compile.ts'
import { loadPolicies } from '../../src/policy/load.ts'
import { parsePrometheusText, sampleValue } from '../support/prometheus_text.ts'

const CTX: PolicyContext = { trustDomain: 'pool.example.org', uidDomain: 'users.example.org', vars: { IAM_ISSUER: 'https://iam.example.org/' }, scitokenProfile: 'wlcg', maxLifetime: {} }
const policy = loadPolicies('policies', CTX)
const NOW = 1_800_000_000
const newMetrics = () => new BrokerMetrics({ clock: fixedClock(NOW), policy: () => policy, process: false })
const issued = (role: string): AuditEvent => ({ type: 'token.issued', time: NOW, role, tokenKind: 'idtoken', decision: 'allow' })
const samplesOf = async (m: BrokerMetrics) => parsePrometheusText((await m.render()).body)

describe('BrokerMetrics', () => {
  it('keeps each instance in a registry of its own', async () => {
    const a = newMetrics()
    const b = newMetrics()
    a.audited(issued('startd'), true, 0.001)
    expect(sampleValue(await samplesOf(a), 'ctb_tokens_issued_total', { role: 'startd' })).toBe(1)
    expect(sampleValue(await samplesOf(b), 'ctb_tokens_issued_total', { role: 'startd' })).toBeUndefined()
  })

  it('counts no issuance whose record failed to commit, but counts the failure', async () => {
    const m = newMetrics()
    m.audited(issued('startd'), false, 0.5)
    const s = await samplesOf(m)
    expect(sampleValue(s, 'ctb_tokens_issued_total', { role: 'startd' })).toBeUndefined()
    expect(sampleValue(s, 'ctb_audit_commit_failures_total')).toBe(1)
  })

  it('gives every revocation kind a sample, 0 included (the absent() alert of docs/metrics.md)', async () => {
    const m = new BrokerMetrics({ clock: fixedClock(NOW), policy: () => policy, process: false, sources: { revocations: () => ({ byKind: new Map(), readAt: NOW - 3 }) } })
    const s = await samplesOf(m)
    for (const kind of ['jti', 'sub', 'role', 'site', 'client', 'pilot-job', 'pilot-enrolment']) expect(sampleValue(s, 'ctb_revocations_active', { kind }), kind).toBe(0)
    expect(sampleValue(s, 'ctb_revocations_read_age_seconds')).toBe(3)
  })

  it('names IAM failures by a bounded cause', async () => {
    const m = newMetrics()
    const refused = Object.assign(new TypeError('fetch failed'), { cause: Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }) })
    const odd = Object.assign(new Error('weird'), { code: 'E_SOMETHING_CALLER_CHOSEN_123' })
    m.iamCall('jwks', 0.01, { error: refused })
    m.iamCall('jwks', 0.01, { error: odd })
    m.iamCall('token', 0.01, { status: 502 })
    m.iamCall('token', 0.01, { status: 400 })
    const s = await samplesOf(m)
    expect(sampleValue(s, 'ctb_iam_errors_total', { call: 'jwks', cause: 'refused' })).toBe(1)
    expect(sampleValue(s, 'ctb_iam_errors_total', { call: 'jwks', cause: 'other' })).toBe(1)
    expect(sampleValue(s, 'ctb_iam_errors_total', { call: 'token', cause: 'http_5xx' })).toBe(1)
    // A 4xx is IAM answering (a refused grant), not IAM failing.
    expect(s.filter((x) => x.name === 'ctb_iam_errors_total').length).toBe(3)
    expect(sampleValue(s, 'ctb_iam_request_duration_seconds_count', { call: 'token' })).toBe(2)
  })

  it.each([
    ['https://iam.example.org/.well-known/openid-configuration', { method: 'GET' }, 'discovery'],
    ['https://iam.example.org/jwk', {}, 'jwks'],
    ['https://iam.example.org/token', { method: 'POST', body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange' }) }, 'token'],
    ['https://iam.example.org/introspect', { method: 'POST', body: 'token=abc&token_type_hint=access_token' }, 'introspection'],
    ['https://iam.example.org/revoke', { method: 'DELETE' }, 'other'],
  ] as const)('classifies %s as %s', (url, init, call) => {
    expect(iamCallOf(url, init as RequestInit)).toBe(call)
  })
})

describe('BrokerMetrics after a policy reload', () => {
  it('stops reporting the seconds since the last renewal of a site the reload removed', async () => {
    // A reload that drops every grant, so no site is bound any longer (roles stay).
    const withoutSites = { ...policy, rules: [] }
    let current = policy
    const m = new BrokerMetrics({ clock: fixedClock(NOW), policy: () => current, process: false })
    m.audited({ type: 'token.renewed', time: NOW - 60, role: 'pilot', site: 'cloud-a', decision: 'allow' }, true, 0.001)
    expect(sampleValue(await samplesOf(m), 'ctb_pilot_seconds_since_last_renewal', { site: 'cloud-a' })).toBe(60)
    current = withoutSites
    // A removed site's pilots can renew no longer: a series climbing for ever would fire the renewal alert.
    expect(sampleValue(await samplesOf(m), 'ctb_pilot_seconds_since_last_renewal', { site: 'cloud-a' })).toBeUndefined()
  })
})
