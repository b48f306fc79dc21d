// RFC 8693 §2.2.2: "If the authorization server is unwilling or unable to issue a token for any target
// service indicated by the resource or audience parameters, the invalid_target error code SHOULD be used
// in the error response."
import { describe, expect, it } from 'vitest'
import { AP1, IDTOKEN_TYPE, JWT_TYPE, TRUST_DOMAIN, expectOAuthError, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()

describe('RFC 8693 §2.2.2 a target the broker will not issue for → invalid_target', () => {
  it('refuses a SciToken for an audience the policy does not allow', async () => {
    const res = await t.post(t.form(await t.userToken(), { requested_token_type: JWT_TYPE, audience: 'condor://ap9.other.example:9618' }))
    await expectOAuthError(res, 400, 'invalid_target')
  })

  it('refuses a SciToken for a resource the policy does not allow', async () => {
    const res = await t.post(t.form(await t.userToken(), { requested_token_type: JWT_TYPE, resource: 'https://storage.example.org/other' }))
    await expectOAuthError(res, 400, 'invalid_target')
  })

  it('refuses an IDTOKEN for any audience but the pool trust domain', async () => {
    const res = await t.post(t.form(await t.userToken(), { requested_token_type: IDTOKEN_TYPE, audience: AP1 }))
    await expectOAuthError(res, 400, 'invalid_target')
  })

  it('issues an IDTOKEN when the audience is the trust domain (control)', async () => {
    const res = await t.post(t.form(await t.userToken(), { requested_token_type: IDTOKEN_TYPE, audience: TRUST_DOMAIN }))
    expect(res.status).toBe(200)
  })

  it('audits the refusal', async () => {
    await t.post(t.form(await t.userToken(), { requested_token_type: JWT_TYPE, audience: 'condor://audit-me.example:9618' }))
    const page = await t.store.query({ limit: 50, decision: 'deny' })
    expect(page.records.some((r) => r.event.reason?.startsWith('invalid_target') && r.event.audience?.includes('condor://audit-me.example:9618'))).toBe(true)
  })
})
