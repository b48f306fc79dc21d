// GET /metrics after real requests through the token pipeline (test/conformance/support/token_app.ts wires
// it as src/services.ts does): names, label sets, bounded label values, the exposition format, and that
// nothing identifying a caller or a token appears on the page.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { ACCESS_TOKEN_TYPE, BROKER_AUDIENCE, GRANT_TYPE, IDTOKEN_TYPE, payloadOf, useTokenApp } from '../conformance/support/token_app.ts'
import { parsePrometheusText, sampleValue, type Sample } from '../support/prometheus_text.ts'

const t = await useTokenApp()
const ENROLMENT = 'urn:condor-token-broker:token-type:pilot-enrolment'

async function scrape(): Promise<{ text: string; samples: Sample[] }> {
  const res = await t.request('/metrics', { method: 'GET' })
  expect(res.status).toBe(200)
  const text = await res.text()
  return { text, samples: parsePrometheusText(text) }
}

const value = async (name: string, labels: Record<string, string> = {}) => sampleValue((await scrape()).samples, name, labels) ?? 0
const seriesOf = (samples: Sample[], name: string) => samples.filter((s) => s.name === name)

describe('GET /metrics', () => {
  it('answers in the Prometheus text format, uncached, with process metrics', async () => {
    const res = await t.request('/metrics', { method: 'GET' })
    expect(res.status).toBe(200)
    // The 0.0.4 text format's content type, as Prometheus asks for it.
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4; charset=utf-8$/i)
    expect(res.headers.get('cache-control')).toBe('no-store')
    const samples = parsePrometheusText(await res.text())
    expect(sampleValue(samples, 'process_cpu_user_seconds_total')).toBeGreaterThanOrEqual(0)
    expect(sampleValue(samples, 'nodejs_heap_size_used_bytes')).toBeGreaterThan(0)
  })

  it('counts an issuance by role, kind and site, and times the request, IAM and the audit commit', async () => {
    const labels = { role: 'submit-user', kind: 'idtoken', site: 'none' }
    const before = await value('ctb_tokens_issued_total', labels)
    const timedBefore = await value('ctb_token_request_duration_seconds_count', { status: '200' })
    const committedBefore = await value('ctb_audit_commit_duration_seconds_count')
    const res = await t.post(t.form(await t.userToken()))
    expect(res.status).toBe(200)
    const { samples } = await scrape()
    expect(sampleValue(samples, 'ctb_tokens_issued_total', labels)).toBe(before + 1)
    expect(sampleValue(samples, 'ctb_token_request_duration_seconds_count', { status: '200' })).toBe(timedBefore + 1)
    expect(sampleValue(samples, 'ctb_audit_commit_duration_seconds_count')).toBe(committedBefore + 1)
    // The first verification fetched IAM's discovery document and keys.
    expect(sampleValue(samples, 'ctb_iam_request_duration_seconds_count', { call: 'jwks' })).toBeGreaterThanOrEqual(1)
    expect(sampleValue(samples, 'ctb_iam_request_duration_seconds_count', { call: 'discovery' })).toBeGreaterThanOrEqual(1)
    // MemoryStore commits through the group committer: each batch's size is observed.
    expect(sampleValue(samples, 'ctb_audit_commit_batch_size_count')).toBeGreaterThanOrEqual(1)
    expect(sampleValue(samples, 'ctb_audit_commit_batch_size_sum')).toBeGreaterThanOrEqual(sampleValue(samples, 'ctb_audit_commit_batch_size_count')!)
    expect(sampleValue(samples, 'ctb_audit_pending_writes')).toBe(0)
    // Only these label names, on every series of the counter.
    for (const s of seriesOf(samples, 'ctb_tokens_issued_total')) expect(Object.keys(s.labels).sort()).toEqual(['kind', 'role', 'site'])
  })

  it('counts a policy denial under the role asked for and its OAuth error code', async () => {
    const labels = { role: 'monitoring', kind: 'none', site: 'none', reason: 'unauthorized_client' }
    const before = await value('ctb_tokens_denied_total', labels)
    const timedBefore = await value('ctb_token_request_duration_seconds_count', { status: '400' })
    // A /htc/users member asking for the monitoring robot's role.
    const res = await t.post(t.form(await t.userToken(), { role: 'monitoring' }))
    expect(res.status).toBe(400)
    expect((await res.json() as { error: string }).error).toBe('unauthorized_client')
    const { samples } = await scrape()
    expect(sampleValue(samples, 'ctb_tokens_denied_total', labels)).toBe(before + 1)
    expect(sampleValue(samples, 'ctb_token_request_duration_seconds_count', { status: '400' })).toBe(timedBefore + 1)
    for (const s of seriesOf(samples, 'ctb_tokens_denied_total')) expect(Object.keys(s.labels).sort()).toEqual(['kind', 'reason', 'role', 'site'])
  })

  it('counts a refusal with nobody to name under role "none", by the error it answered', async () => {
    const none = { role: 'none', kind: 'none', site: 'none' }
    const { samples } = await scrape()
    const res = await t.post(t.form('not-a-jwt-at-all'))
    expect(res.status).toBe(400)
    const { error } = await res.json() as { error: string }
    const labels = { ...none, reason: error }
    expect(await value('ctb_tokens_denied_total', labels)).toBe((sampleValue(samples, 'ctb_tokens_denied_total', labels) ?? 0) + 1)
  })

  it('counts a refusal for an audit store outage (503) once, under reason "store_unavailable"', async () => {
    // An admin watching ctb_tokens_denied_total must see an outage: the refusal has no audit record (its
    // store is what failed), so the counter is the only tally of who was turned away.
    const labels = { role: 'none', kind: 'none', site: 'none', reason: 'store_unavailable' }
    const total = (samples: Sample[]) => seriesOf(samples, 'ctb_tokens_denied_total').reduce((n, s) => n + s.value, 0)
    const before = (await scrape()).samples
    const token = await t.userToken()
    t.audit.mode = 'failing'
    const res = await t.post(t.form(token))
    expect(res.status).toBe(503)
    expect((await res.json() as { error: string }).error).toBe('temporarily_unavailable')
    t.audit.mode = 'ok'
    const after = (await scrape()).samples
    expect(sampleValue(after, 'ctb_tokens_denied_total', labels)).toBe((sampleValue(before, 'ctb_tokens_denied_total', labels) ?? 0) + 1)
    // Once: no second series counts the same refusal.
    expect(total(after)).toBe(total(before) + 1)
  })

  it('keeps made-up roles and sites from growing the series count', async () => {
    const token = await t.userToken()
    // Warm up: the first made-up role and site create their bounded series ("other").
    await t.post(t.form(token, { role: 'made-up-role', site: 'made-up-site' }))
    const before = (await scrape()).samples.filter((s) => s.name.startsWith('ctb_')).length
    const name = fc.stringMatching(/^[a-z][a-z0-9-]{0,30}$/)
    await fc.assert(fc.asyncProperty(name, name, async (role, site) => {
      await t.post(t.form(token, { role: `zzrole-${role}`, site: `zzsite-${site}` }))
    }), { numRuns: 40 })
    const { text, samples } = await scrape()
    expect(samples.filter((s) => s.name.startsWith('ctb_')).length).toBe(before)
    // Every role and site label is one the policy defines, or "other"/"none".
    const roles = new Set(['monitoring', 'submit-user', 'pilot', 'pilot-ccb', 'other', 'none'])
    const sites = new Set(['hpc-a', 'hpc-t', 'other', 'none'])
    for (const s of samples) {
      if (s.labels.role !== undefined) expect(roles, `${s.name} role=${s.labels.role}`).toContain(s.labels.role)
      if (s.labels.site !== undefined) expect(sites, `${s.name} site=${s.labels.site}`).toContain(s.labels.site)
    }
    expect(text).not.toMatch(/zzrole-|zzsite-|made-up/)
  })

  // Every other value a caller picks: none reaches a label, so no number of distinct ones adds a series.
  it('keeps caller-chosen audiences, scopes, token types, paths, methods and headers from growing the series count', async () => {
    const token = await t.userToken()
    const send = async (v: string) => {
      await t.post(t.form(token, { audience: `https://zz-${v}.example.org`, scope: `storage.read:/zz-${v}` }))
      await t.post(t.form(token, { requested_token_type: `urn:zz:${v}` }))
      await t.post(t.form(token, { grant_type: `urn:zz:${v}` }))
      await t.request(`/zz-${v}`, { method: 'GET', headers: { 'user-agent': `zz-${v}`, 'x-request-id': `zz-${v}` } })
      await t.request('/token', { method: 'PUT', headers: { 'user-agent': `zz-${v}` } })
    }
    // Warm up: the first refusal of each kind creates its bounded series.
    await send('warm')
    const denied = (samples: Sample[]) => seriesOf(samples, 'ctb_tokens_denied_total').reduce((n, s) => n + s.value, 0)
    const warm = (await scrape()).samples
    const before = warm.filter((s) => s.name.startsWith('ctb_')).length
    const v = fc.stringMatching(/^[a-z0-9]{1,20}$/)
    await fc.assert(fc.asyncProperty(v, send), { numRuns: 30 })
    const { text, samples } = await scrape()
    // The crafted requests did reach the pipeline: three refusals of POST /token each.
    expect(denied(samples) - denied(warm)).toBeGreaterThanOrEqual(90)
    expect(samples.filter((s) => s.name.startsWith('ctb_')).length).toBe(before)
    expect(text).not.toMatch(/zz-|urn:zz/)
  })

  it('shows no token, sub, jti or caller on the page', async () => {
    const sub = 'metrics-secret-sub-7f3a'
    const subjectToken = await t.userToken({ sub, preferred_username: 'carol' })
    const res = await t.post(t.form(subjectToken))
    const issued = (await res.json() as { access_token: string }).access_token
    const claims = payloadOf(issued)
    // A denial naming the same caller, so both paths have seen it.
    await t.post(t.form(subjectToken, { role: 'monitoring' }))
    const { text } = await scrape()
    for (const secret of [sub, String(claims.jti), String(claims.sub), 'carol', issued.slice(-24), subjectToken.slice(-24), t.iam.issuer]) {
      expect(text, secret).not.toContain(secret)
    }
  })

  it('counts a pilot redemption and renewal, live pilots and the time since the site last renewed', async () => {
    const enrol = await t.post({
      grant_type: GRANT_TYPE, subject_token: await t.iam.mint({ aud: BROKER_AUDIENCE, client_id: 'ctb-pilot-factory' }), subject_token_type: ACCESS_TOKEN_TYPE,
      requested_token_type: ENROLMENT, role: 'pilot', pilot_count: '1',
    })
    const credential = (await enrol.json() as { access_token: string }).access_token
    const renewedBefore = await value('ctb_tokens_renewed_total', { role: 'pilot', site: 'hpc-a' })
    const issuedBefore = await value('ctb_tokens_issued_total', { role: 'pilot', kind: 'idtoken', site: 'hpc-a' })
    const liveBefore = await value('ctb_pilots_live', { site: 'hpc-a' })
    const redeemed = await t.post({
      grant_type: GRANT_TYPE, subject_token: credential, subject_token_type: ENROLMENT,
      slurm_job_id: '4242', node: 'n1', job_end: String(Math.floor(Date.now() / 1000) + 600),
    })
    expect(redeemed.status).toBe(200)
    const renewed = await t.post({
      grant_type: GRANT_TYPE, subject_token: (await redeemed.json() as { access_token: string }).access_token, subject_token_type: IDTOKEN_TYPE,
    })
    expect(renewed.status).toBe(200)
    const { samples } = await scrape()
    expect(sampleValue(samples, 'ctb_tokens_issued_total', { role: 'pilot', kind: 'idtoken', site: 'hpc-a' })).toBe(issuedBefore + 1)
    expect(sampleValue(samples, 'ctb_tokens_issued_total', { role: 'pilot', kind: 'pilot_enrolment', site: 'hpc-a' })).toBeGreaterThanOrEqual(1)
    expect(sampleValue(samples, 'ctb_tokens_renewed_total', { role: 'pilot', site: 'hpc-a' })).toBe(renewedBefore + 1)
    // One pilot (one node): its renewal replaced its first token rather than adding a second.
    expect(sampleValue(samples, 'ctb_pilots_live', { site: 'hpc-a' })).toBe(liveBefore + 1)
    const since = sampleValue(samples, 'ctb_pilot_seconds_since_last_renewal', { site: 'hpc-a' })
    expect(since).toBeGreaterThanOrEqual(0)
    expect(since).toBeLessThan(60)
  })

  it('shows revocations in force by kind', async () => {
    const before = await value('ctb_revocations_active', { kind: 'sub' })
    await t.revocations.revoke({ kind: 'sub', value: 'metrics-revoked-user' }, { principal: 'test' })
    const { samples, text } = await scrape()
    expect(sampleValue(samples, 'ctb_revocations_active', { kind: 'sub' })).toBe(before + 1)
    expect(sampleValue(samples, 'ctb_revocations_active', { kind: 'pilot-job' })).toBe(0)
    expect(text).not.toContain('metrics-revoked-user')
  })

  it('shows the signing key age and the time left until its rotation is due', async () => {
    const { samples } = await scrape()
    const age = sampleValue(samples, 'ctb_signing_key_age_seconds', { key: 'scitoken' })!
    expect(age).toBeGreaterThanOrEqual(0)
    expect(age).toBeLessThan(600)
    // metrics.key_rotation_days.scitoken defaults to 180 days.
    expect(sampleValue(samples, 'ctb_signing_key_rotation_due_seconds', { key: 'scitoken' })).toBeCloseTo(180 * 86400 - age, -1)
  })
})
