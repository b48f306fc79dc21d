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
