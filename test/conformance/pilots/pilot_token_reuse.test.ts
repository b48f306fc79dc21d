// Reuse detection for pilot token renewal (docs/pilots.md, "Renewal chains and reuse"), after OAuth 2.0
// refresh-token rotation. RFC 9700 §4.14.2: "If a refresh token is compromised and subsequently used by both
// the attacker and the legitimate client, one of them will present an invalidated refresh token, which will
// inform the authorization server of the breach. The authorization server cannot determine which party
// submitted the invalid refresh token, but it will revoke the active refresh token. This stops the attack."
// Adapted: a pilot that lost the answer to a renewal may present the replaced token again while nobody has
// renewed with its successor (and the token is valid); every such retry retires the successor it replaces.
import { describe, expect, it, vi } from 'vitest'
import { AuditStoreUnavailable } from '../../../src/errors.ts'
import { ACCESS_TOKEN_TYPE, BROKER_AUDIENCE, GRANT_TYPE, IDTOKEN_TYPE, expectOAuthError, payloadOf, useTokenApp } from '../support/token_app.ts'
import { expectRetryLaterAnswer } from '../../support/retry_later_answer.ts'

const t = await useTokenApp()
// Spelled here from the contract, not imported: the wire value must not drift with the code.
const ENROLMENT = 'urn:condor-token-broker:token-type:pilot-enrolment'
const now = () => Math.floor(Date.now() / 1000)
let jobs = 5000
const nextJob = () => String(++jobs)

async function pilot(): Promise<{ token: string; sub: string; job: string }> {
  const enrol = await t.post({
    grant_type: GRANT_TYPE, subject_token: await t.iam.mint({ aud: BROKER_AUDIENCE, client_id: 'ctb-pilot-factory' }), subject_token_type: ACCESS_TOKEN_TYPE,
    requested_token_type: ENROLMENT, role: 'pilot', pilot_count: '1', lifetime: '3600',
  })
  const credential = ((await enrol.json()) as { access_token: string }).access_token
  const job = nextJob()
  const res = await t.post({ grant_type: GRANT_TYPE, subject_token: credential, subject_token_type: ENROLMENT, slurm_job_id: job, node: 'n1', job_end: String(now() + 1200) })
  const token = ((await res.json()) as { access_token: string }).access_token
  expect(res.status).toBe(200)
  return { token, sub: payloadOf(token).sub as string, job }
}

const renewForm = (token: string) => ({ grant_type: GRANT_TYPE, subject_token: token, subject_token_type: IDTOKEN_TYPE })

async function renewed(token: string): Promise<string> {
  const res = await t.post(renewForm(token))
  const body = await res.json() as { access_token: string }
  expect(res.status, JSON.stringify(body)).toBe(200)
  return body.access_token
}

const jtiOf = (token: string) => payloadOf(token).jti as string

async function revocationsOf(sub: string) {
  return (await t.store.listRevocations()).filter((r) => r.value === sub)
}

async function reuseDenials(jti: string) {
  return (await t.store.query({ type: 'token.denied', limit: 1000 })).records.map((r) => r.event)
    .filter((e) => (e.detail?.reuse as { jti?: string } | undefined)?.jti === jti)
}

function metric(page: string, outcome: string): number {
  const line = page.split('\n').find((l) => l.startsWith('ctb_pilot_token_reuse_total{') && l.includes('site="hpc-a"') && l.includes(`outcome="${outcome}"`))
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1))
}

describe('pilot token reuse', () => {
  it('refuses a replaced token whose successor was renewed, records which jti and successor, and revokes the pilot identity', async () => {
    const p = await pilot()
    const t1 = await renewed(p.token)
    const t2 = await renewed(t1)
    const before = (await t.metrics.render()).body
    const body = await expectOAuthError(await t.post(renewForm(p.token)), 400, 'invalid_grant', [p.token])
    expect(body.error_description).toMatch(/already renewed/)

    const [denial, ...more] = await reuseDenials(jtiOf(p.token))
    expect(more).toEqual([])
    expect(denial).toMatchObject({ decision: 'deny', site: 'hpc-a', role: 'pilot', detail: { reuse: { jti: jtiOf(p.token), successor: jtiOf(t1) } } })
    expect(denial!.reason).toMatch(/^invalid_grant: /)
    // The lineage is the pilot identity (its `sub`, as the redemption recorded it): one entry, recorded.
    const revs = await revocationsOf(p.sub)
    expect(revs.map((r) => r.kind)).toEqual(['sub'])
    const revoked = (await t.store.query({ type: 'token.revoked', issuedSub: p.sub, limit: 10 })).records
    expect(revoked).toHaveLength(1)
    // The real pilot's chain stops at its next renewal.
    await expectOAuthError(await t.post(renewForm(t2)), 400, 'invalid_grant')
    const after = (await t.metrics.render()).body
    expect(metric(after, 'revoked') - metric(before, 'revoked')).toBe(1)
  })

  it('lets a pilot that lost the answer renew the same token again, with no denial and no revocation', async () => {
    const p = await pilot()
    const before = (await t.metrics.render()).body
    await renewed(p.token) // the answer is lost on the way back
    const retry = await renewed(p.token)
    expect(payloadOf(retry).sub).toBe(p.sub)
    const rec = (await t.store.query({ type: 'token.renewed', jti: jtiOf(retry), limit: 1 })).records[0]
    expect(rec?.event.detail?.replaces).toBe(jtiOf(p.token))
    // Its chain goes on.
    await renewed(await renewed(retry))
    expect(await reuseDenials(jtiOf(p.token))).toEqual([])
    expect(await revocationsOf(p.sub)).toEqual([])
    const after = (await t.metrics.render()).body
    expect(metric(after, 'retried') - metric(before, 'retried')).toBe(1)
  })

  it('renews a pilot that lost every answer of its retry loop, however many, and revokes nothing', async () => {
    // The sbatch pilot retries a renewal with the same token until shortly before that token expires
    // (docs/pilots-script.md, step 7): behind a proxy that drops each answer after the broker committed, that
    // is one presentation per backoff step, 5, 10, 20, 40 s… Six here: five answers lost, the sixth arrives.
    const p = await pilot()
    const lost: string[] = []
    for (let i = 0; i < 5; i++) lost.push(await renewed(p.token))
    const kept = await renewed(p.token)
    await renewed(await renewed(kept))
    expect(await reuseDenials(jtiOf(p.token))).toEqual([])
    expect(await revocationsOf(p.sub)).toEqual([])
    // Every lost answer's token was retired by the retry after it: a copy of one coming back is a fork.
    await expectOAuthError(await t.post(renewForm(lost[2]!)), 400, 'invalid_grant')
    expect((await revocationsOf(p.sub)).map((r) => r.kind)).toEqual(['sub'])
  })

  it('stops both chains of a fork made inside the retry allowance', async () => {
    const p = await pilot()
    const real = await renewed(p.token)
    // The thief presents the stolen token before the real pilot renews again: indistinguishable from a retry.
    const thief = await renewed(p.token)
    // The real pilot's token was retired by that retry: presenting it reveals the fork.
    const body = await expectOAuthError(await t.post(renewForm(real)), 400, 'invalid_grant')
    expect(body.error_description).toMatch(/already renewed/)
    const [denial] = await reuseDenials(jtiOf(real))
    expect(denial?.detail?.reuse).toEqual({ jti: jtiOf(real), successor: jtiOf(thief) })
    // And the thief's chain stops at its next renewal.
    await expectOAuthError(await t.post(renewForm(thief)), 400, 'invalid_grant')
    expect((await revocationsOf(p.sub)).map((r) => r.kind)).toEqual(['sub'])
  })

  it('refuses a retry once the successor has been renewed, even the first one', async () => {
    const p = await pilot()
    const t1 = await renewed(p.token)
    const t2 = await renewed(t1)
    await expectOAuthError(await t.post(renewForm(p.token)), 400, 'invalid_grant')
    await expectOAuthError(await t.post(renewForm(t2)), 400, 'invalid_grant')
  })

  it('touches no other pilot', async () => {
    const p = await pilot()
    const q = await pilot()
    await renewed(await renewed(p.token))
    await expectOAuthError(await t.post(renewForm(p.token)), 400, 'invalid_grant')
    await renewed(q.token)
  })

  it('answers server_error, and no token, when the revocation cannot be recorded; the next presentation revokes', async () => {
    const p = await pilot()
    await renewed(await renewed(p.token))
    const spy = vi.spyOn(t.revocations, 'revoke').mockRejectedValueOnce(new Error('audit store unavailable'))
    try {
      const res = await t.post(renewForm(p.token))
      expect(res.status).toBe(500)
      expect(await res.json()).toEqual({ error: 'server_error' })
    } finally {
      spy.mockRestore()
    }
    expect(await revocationsOf(p.sub)).toEqual([])
    await expectOAuthError(await t.post(renewForm(p.token)), 400, 'invalid_grant')
    expect((await revocationsOf(p.sub)).map((r) => r.kind)).toEqual(['sub'])
  })

  // RFC 6749 §4.1.2.1 `temporarily_unavailable`: the store out of reach is an outage, answered 503 with
  // Retry-After (RFC 9110 §15.6.4) rather than as a broken broker; the reuse is still refused, no token.
  it('answers 503 temporarily_unavailable, and no token, when the revocation meets a store outage; the next presentation revokes', async () => {
    const p = await pilot()
    await renewed(await renewed(p.token))
    const outage = new AuditStoreUnavailable(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }))
    const spy = vi.spyOn(t.revocations, 'revoke').mockRejectedValueOnce(outage)
    try {
      const res = await t.post(renewForm(p.token))
      await expectRetryLaterAnswer(res, 'access_token')
    } finally {
      spy.mockRestore()
    }
    expect(await revocationsOf(p.sub)).toEqual([])
    await expectOAuthError(await t.post(renewForm(p.token)), 400, 'invalid_grant')
    expect((await revocationsOf(p.sub)).map((r) => r.kind)).toEqual(['sub'])
  })
})
