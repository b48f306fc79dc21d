// Revoking a pilot enrolment credential (a provisioning teardown) ends the pilots it yielded at their next
// renewal (docs/pilots.md §3). The pilots' tokens outlive the credential: it only has to cover the queue
// wait, while each pilot token lives token_lifetime (30 min in this policy) and is renewed until the job
// ends. So the revocation must still hold once the credential itself has expired, for as long as any token
// redeemed with it may still be valid; otherwise the torn-down pilots start renewing again.
import { describe, expect, it } from 'vitest'
import { ACCESS_TOKEN_TYPE, BROKER_AUDIENCE, GRANT_TYPE, IDTOKEN_TYPE, expectOAuthError, payloadOf, useTokenApp } from '../support/token_app.ts'

let offset = 0
const clock = { now: () => Math.floor(Date.now() / 1000) + offset }
const t = await useTokenApp({ clock })
const ENROLMENT = 'urn:condor-token-broker:token-type:pilot-enrolment'
const CREDENTIAL_LIFETIME = 600
const TOKEN_LIFETIME = 1800

let jobs = 5000
async function redeemedPilot(): Promise<{ token: string; enrolmentJti: string; enrolmentExp: number }> {
  const res = await t.post({
    grant_type: GRANT_TYPE, subject_token: await t.iam.mint({ aud: BROKER_AUDIENCE, client_id: 'ctb-pilot-factory' }),
    subject_token_type: ACCESS_TOKEN_TYPE, requested_token_type: ENROLMENT, role: 'pilot', pilot_count: '1', lifetime: String(CREDENTIAL_LIFETIME),
  })
  expect(res.status).toBe(200)
  const credential = ((await res.json()) as { access_token: string }).access_token
  const issued = (await t.store.query({ type: 'token.issued', limit: 1 })).records[0]!.event
  expect(issued.tokenKind).toBe('pilot_enrolment')
  const redeemed = await t.post({
    grant_type: GRANT_TYPE, subject_token: credential, subject_token_type: ENROLMENT,
    slurm_job_id: String(++jobs), node: 'n1', job_end: String(clock.now() + 7000),
  })
  const token = ((await redeemed.json()) as { access_token: string }).access_token
  const c = payloadOf(token)
  expect((c.exp as number) - (c.iat as number)).toBe(TOKEN_LIFETIME)
  return { token, enrolmentJti: issued.jti!, enrolmentExp: issued.exp! }
}

const renew = (token: string) => t.post({ grant_type: GRANT_TYPE, subject_token: token, subject_token_type: IDTOKEN_TYPE })

describe('a revoked enrolment credential', () => {
  for (const how of ['revoke --jti (exp from the log)', 'teardown (exp from the manifest)'] as const) {
    it(`keeps its pilots from renewing after the credential itself has expired: ${how}`, async () => {
      offset = 0
      const { token, enrolmentJti, enrolmentExp } = await redeemedPilot()
      await t.revocations.revoke({ kind: 'jti', value: enrolmentJti, ...(how.startsWith('teardown') ? { exp: enrolmentExp } : {}) }, { principal: 'test' })
      await expectOAuthError(await renew(token), 400, 'invalid_grant')
      // Past the credential's expiry, well within the pilot token's: a periodic refresh later, still refused.
      offset = CREDENTIAL_LIFETIME + 60
      await t.revocations.refresh()
      expect(payloadOf(token).exp as number).toBeGreaterThan(clock.now())
      await expectOAuthError(await renew(token), 400, 'invalid_grant')
    })
  }
})

// A pilot factory is an IAM service account, matched by client_id (docs/policies.md): `revoke --client`
// is how an admin stops a compromised one, and while it is in force the broker issues nothing new to that
// caller (docs/architecture.md). A redemption issues a pilot token on the strength of what the factory
// obtained, so the factory's outstanding credentials stop too, as they do for `revoke --sub` of it.
describe('a revoked pilot factory client', () => {
  it('can no longer have the credentials it obtained redeemed', async () => {
    offset = 0
    const res = await t.post({
      grant_type: GRANT_TYPE, subject_token: await t.iam.mint({ aud: BROKER_AUDIENCE, client_id: 'ctb-pilot-factory' }),
      subject_token_type: ACCESS_TOKEN_TYPE, requested_token_type: ENROLMENT, role: 'pilot', pilot_count: '2',
    })
    const credential = ((await res.json()) as { access_token: string }).access_token
    const redeem = () => t.post({
      grant_type: GRANT_TYPE, subject_token: credential, subject_token_type: ENROLMENT,
      slurm_job_id: String(++jobs), node: 'n1', job_end: String(clock.now() + 600),
    })
    const rev = await t.revocations.revoke({ kind: 'client', value: 'ctb-pilot-factory' }, { principal: 'test' })
    try {
      await expectOAuthError(await redeem(), 400, 'invalid_grant', [credential])
      const denied = (await t.store.query({ type: 'token.denied', limit: 100 })).records.map((r) => r.event).filter((e) => e.detail?.pilot === 'redeem')
      expect(denied).toHaveLength(1)
      expect(denied[0]!.caller?.client_id).toBe('ctb-pilot-factory')
    } finally {
      await t.revocations.lift(rev.id, {}, { principal: 'test' })
    }
    expect((await redeem()).status).toBe(200)
  })
})

describe('an enrolment caller whose client_id could not be carried', () => {
  // The credential carries the caller's client_id and is at most 4 KiB: a client_id that would outgrow it is
  // refused as a bad request (like a sub, at most 255 printable characters), never a 500.
  it('is refused with invalid_request', async () => {
    offset = 0
    const res = await t.post({
      grant_type: GRANT_TYPE, subject_token: await t.iam.mint({ aud: BROKER_AUDIENCE, client_id: 'c'.repeat(5000) }),
      subject_token_type: ACCESS_TOKEN_TYPE, requested_token_type: ENROLMENT, role: 'pilot', pilot_count: '1',
    })
    const body = await expectOAuthError(res, 400, 'invalid_request')
    expect(body.error_description).toMatch(/client_id/)
  })
})
