// RFC 8693 §2.1: "audience OPTIONAL. The logical name of the target service where the client intends to
// use the requested security token. [...] Multiple audience parameters may be used to indicate that the
// issued token is intended to be used at the multiple audiences listed."
import { describe, expect, it } from 'vitest'
import { AP1, AP2, JWT_TYPE, expectOAuthError, payloadOf, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()

describe('RFC 8693 §2.1 audience is repeatable', () => {
  // "may": whether one token serves several targets is the issuer's call. The broker issues one audience per
  // token unless the grant sets multiple_audiences (test/unit/policy_decide.test.ts): this app's grant does not.
  it('parses both audiences and refuses one token for two services: invalid_target', async () => {
    const res = await t.post(t.form(await t.userToken(), { requested_token_type: JWT_TYPE, audience: [AP1, AP2] }))
    expect((await expectOAuthError(res, 400, 'invalid_target')).error_description).toBe('role submit-user issues a token for one audience at a time, not 2 (ask once per service)')
  })

  it('takes every audience to the policy: a forbidden second audience is refused, not dropped', async () => {
    const res = await t.post(t.form(await t.userToken(), { requested_token_type: JWT_TYPE, audience: [AP1, 'condor://evil.example.org:9618'] }))
    expect((await expectOAuthError(res, 400, 'invalid_target')).error_description).toMatch(/evil\.example\.org/)
  })

  it('does not treat repeated audience as a duplicated parameter', async () => {
    const res = await t.post(t.form(await t.userToken(), { requested_token_type: JWT_TYPE, audience: [AP1, AP1] }))
    expect(res.status).toBe(200)
    expect(payloadOf((await res.json() as { access_token: string }).access_token).aud).toBe(AP1)
  })
})
