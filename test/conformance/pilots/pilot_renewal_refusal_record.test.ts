// The whole record of a refused pilot renewal, field by field (docs/audit.md, "Fields" and "Refusals: one by
// one, or counted"; docs/pilots.md, "Renewal chains and reuse" and "A late first attempt"): a reused token's
// refusal and a late attempt's refusal are each one `token.denied` record naming the caller whose pilot token
// verified, its role, rule and site, the reason as `<oauth error>: <description>` (the description the pilot
// got), and `detail: {pilot: "renew", reuse | stale: {jti, successor}}`; nothing else. The reuse is followed
// by the revocation of the pilot's `sub` under the caller `condor-token-broker:pilot-token-reuse`.
import { describe, expect, it } from 'vitest'
import type { AuditEvent } from '../../../src/audit/audit_log.ts'
import { AuditStoreUnavailable } from '../../../src/errors.ts'
import { ACCESS_TOKEN_TYPE, BROKER_AUDIENCE, GRANT_TYPE, IDTOKEN_TYPE, TRANSPORT, expectOAuthError, payloadOf, useTokenApp } from '../support/token_app.ts'

let clockNow = Math.floor(Date.now() / 1000)
const t = await useTokenApp({ clock: { now: () => clockNow } })
// Spelled here from the docs, not imported: the recorded values must not drift with the code.
const ENROLMENT = 'urn:condor-token-broker:token-type:pilot-enrolment'
const REUSE_REVOKER = 'condor-token-broker:pilot-token-reuse'
/** The policy rule with the pilot grant in token_app.ts's policy, and the one site it allows. */
const RULE = 'hpc-pilots'
const SITE = 'hpc-a'
/** The peer address a record names: the socket's, and none under app.request (no socket). */
const ADDRESS = TRANSPORT === 'socket' ? { clientAddress: '127.0.0.1' } : {}
let jobs = 9100

async function pilot(): Promise<{ token: string; sub: string }> {
  const enrol = await t.post({
    grant_type: GRANT_TYPE, subject_token: await t.iam.mint({ aud: BROKER_AUDIENCE, client_id: 'ctb-pilot-factory' }), subject_token_type: ACCESS_TOKEN_TYPE,
    requested_token_type: ENROLMENT, role: 'pilot', pilot_count: '1', lifetime: '3600',
  })
  const credential = ((await enrol.json()) as { access_token: string }).access_token
  const res = await t.post({ grant_type: GRANT_TYPE, subject_token: credential, subject_token_type: ENROLMENT, slurm_job_id: String(++jobs), node: 'n1', job_end: String(clockNow + 1200) })
  const token = ((await res.json()) as { access_token: string }).access_token
  expect(res.status).toBe(200)
  return { token, sub: payloadOf(token).sub as string }
}

const renew = (token: string) => t.post({ grant_type: GRANT_TYPE, subject_token: token, subject_token_type: IDTOKEN_TYPE })

async function renewed(token: string): Promise<string> {
  const res = await renew(token)
  const body = await res.json() as { access_token: string }
  expect(res.status, JSON.stringify(body)).toBe(200)
  return body.access_token
}

const jtiOf = (token: string) => payloadOf(token).jti as string

/** Every record the request with this X-Request-Id wrote. */
async function recordsOf(requestId: string): Promise<AuditEvent[]> {
  return (await t.store.query({ limit: 1000 })).records.map((r) => r.event).filter((e) => e.requestId === requestId)
}

/** A counter's value summed over the series whose labels include all of `labels`. */
function counter(page: string, name: string, labels: Record<string, string>): number {
  return page.split('\n').filter((l) => l.startsWith(`${name}{`) && Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`)))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0)
}

describe('the record of a refused pilot renewal', () => {
  it('a reused token: one token.denied record with exactly the documented fields, then the revocation of its sub', async () => {
    const p = await pilot()
    clockNow += 60
    const t1 = await renewed(p.token)
    clockNow += 60
    await renewed(t1)
    clockNow += 60
    const before = (await t.metrics.render()).body
    const res = await renew(p.token)
    const requestId = res.headers.get('x-request-id')!
    const body = await expectOAuthError(res, 400, 'invalid_grant', [p.token])
    expect(body.error_description).toMatch(/already renewed/)
    expect(body.error_description).toMatch(/renewal chain/)

    const written = await recordsOf(requestId)
    expect(written.map((e) => e.type)).toEqual(['token.revoked', 'token.denied'])
    const claims = payloadOf(p.token)
    expect(written[1]).toEqual({
      type: 'token.denied', time: clockNow, requestId, caller: { iss: claims.iss, sub: p.sub }, ...ADDRESS,
      role: 'pilot', policyRule: RULE, decision: 'deny', reason: `invalid_grant: ${body.error_description}`, site: SITE,
      detail: { pilot: 'renew', reuse: { jti: jtiOf(p.token), successor: jtiOf(t1) } },
    })
    // The revocation: the pilot's identity, by the broker itself, with a reason naming both jtis.
    expect(written[0]).toMatchObject({ type: 'token.revoked', caller: { sub: REUSE_REVOKER } })
    const revs = (await t.store.listRevocations()).filter((r) => r.value === p.sub)
    expect(revs).toHaveLength(1)
    expect(revs[0]).toMatchObject({ kind: 'sub', value: p.sub, revokedAt: clockNow, revokedBy: REUSE_REVOKER })
    expect(revs[0]!.reason).toContain(jtiOf(p.token))
    expect(revs[0]!.reason).toContain(jtiOf(t1))

    const after = (await t.metrics.render()).body
    const delta = (name: string, labels: Record<string, string>) => counter(after, name, labels) - counter(before, name, labels)
    expect(delta('ctb_tokens_denied_total', { role: 'pilot', site: SITE, reason: 'invalid_grant' })).toBe(1)
    expect(delta('ctb_tokens_denied_total', {})).toBe(1)
    expect(delta('ctb_pilot_token_reuse_total', { site: SITE, outcome: 'revoked' })).toBe(1)
    expect(delta('ctb_pilot_token_reuse_total', { outcome: 'retried' })).toBe(0)
    expect(delta('ctb_tokens_renewed_total', {})).toBe(0)
    expect((await t.store.verify()).ok).toBe(true)
  })

  it('a reused token whose revocation meets an audit store outage: 503, and the refusal counted once', async () => {
    // The reuse's refusal commits (its record names the reason); the revocation after it cannot. The
    // client is answered 503 so that its retry is judged reuse again and revokes; ctb_tokens_denied_total
    // counts requests refused, and this one already counted from its committed record.
    const p = await pilot()
    clockNow += 60
    const t1 = await renewed(p.token)
    clockNow += 60
    await renewed(t1)
    clockNow += 60
    const revoke = t.store.revoke.bind(t.store)
    t.store.revoke = () => Promise.reject(new AuditStoreUnavailable(new Error('connection terminated unexpectedly')))
    try {
      const before = (await t.metrics.render()).body
      const res = await renew(p.token)
      await expectOAuthError(res, 503, 'temporarily_unavailable', [p.token])
      const written = await recordsOf(res.headers.get('x-request-id')!)
      expect(written.map((e) => e.type)).toEqual(['token.denied'])
      const after = (await t.metrics.render()).body
      const delta = (name: string, labels: Record<string, string>) => counter(after, name, labels) - counter(before, name, labels)
      expect(delta('ctb_tokens_denied_total', { role: 'pilot', site: SITE, reason: 'invalid_grant' })).toBe(1)
      expect(delta('ctb_tokens_denied_total', {})).toBe(1)
    } finally {
      t.store.revoke = revoke
    }
  })

  it('a reused token whose revocation commits but whose re-read meets an outage: refused as reuse, revoked once, enforced', async () => {
    // The revocation of the pilot's sub committed; only the read of the active entries after it failed. The
    // pilot is told what happened (reuse, 400), not 503: a retry would be judged reuse and revoke a second time.
    const p = await pilot()
    clockNow += 60
    const t1 = await renewed(p.token)
    clockNow += 60
    const t2 = await renewed(t1)
    clockNow += 60
    const revoke = t.store.revoke.bind(t.store)
    const list = t.store.listRevocations.bind(t.store)
    let failing = false
    t.store.revoke = async (rev, event) => { const done = await revoke(rev, event); failing = true; return done }
    t.store.listRevocations = (o) => failing ? Promise.reject(new AuditStoreUnavailable(new Error('connection terminated unexpectedly'), 'read')) : list(o)
    try {
      const res = await renew(p.token)
      const body = await expectOAuthError(res, 400, 'invalid_grant', [p.token])
      expect(body.error_description).toMatch(/already renewed/)
      const written = await recordsOf(res.headers.get('x-request-id')!)
      expect(written.map((e) => e.type)).toEqual(['token.revoked', 'token.denied'])
    } finally {
      t.store.revoke = revoke
      t.store.listRevocations = list
    }
    expect((await t.store.listRevocations()).filter((r) => r.value === p.sub)).toHaveLength(1)
    // Enforced by this broker at once: the newest token of the chain no longer renews.
    expect(t.revocations.isRevoked(payloadOf(t2))).toBe(true)
    expect((await renew(t2)).status).toBe(400)
  })

  it('an attempt older than the answer given: one token.denied record with exactly the documented fields, nothing revoked', async () => {
    const p = await pilot()
    clockNow += 100
    const held = await renewed(p.token)
    // The same token again, minted 20 s before the answer above was.
    clockNow -= 20
    const before = (await t.metrics.render()).body
    const res = await renew(p.token)
    const requestId = res.headers.get('x-request-id')!
    const body = await expectOAuthError(res, 503, 'temporarily_unavailable', [p.token])

    const written = await recordsOf(requestId)
    expect(written).toHaveLength(1)
    const claims = payloadOf(p.token)
    expect(written[0]).toEqual({
      type: 'token.denied', time: clockNow, requestId, caller: { iss: claims.iss, sub: p.sub }, ...ADDRESS,
      role: 'pilot', policyRule: RULE, decision: 'deny', reason: `temporarily_unavailable: ${body.error_description}`, site: SITE,
      detail: { pilot: 'renew', stale: { jti: jtiOf(p.token), successor: jtiOf(held) } },
    })
    expect((await t.store.listRevocations()).filter((r) => r.value === p.sub)).toEqual([])

    const after = (await t.metrics.render()).body
    const delta = (name: string, labels: Record<string, string>) => counter(after, name, labels) - counter(before, name, labels)
    expect(delta('ctb_tokens_denied_total', { role: 'pilot', site: SITE, reason: 'temporarily_unavailable' })).toBe(1)
    expect(delta('ctb_tokens_denied_total', {})).toBe(1)
    expect(delta('ctb_pilot_token_reuse_total', {})).toBe(0)
    expect(delta('ctb_tokens_renewed_total', {})).toBe(0)
    clockNow += 80
    expect((await t.store.verify()).ok).toBe(true)
  })
})
