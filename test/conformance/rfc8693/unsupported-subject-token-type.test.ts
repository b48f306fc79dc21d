// RFC 8693 §2.1: "subject_token_type REQUIRED. An identifier, as described in Section 3, that indicates
// the type of the security token in the subject_token parameter." RFC 8693 §2.2.2: "If the request
// itself is not valid [...] The value of the error parameter MUST be the invalid_request error code."
// docs/iam-and-wlcg.md §3.1: access_token (and jwt) are accepted; anything else is invalid_request.
import { describe, expect, it } from 'vitest'
import { ACCESS_TOKEN_TYPE, JWT_TYPE, expectOAuthError, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()

describe('RFC 8693 §2.1 unsupported subject_token_type → invalid_request', () => {
  it.each([
    'urn:ietf:params:oauth:token-type:id_token',
    'urn:ietf:params:oauth:token-type:refresh_token',
    'urn:ietf:params:oauth:token-type:saml2',
    'urn:htcondor:token-type:idtoken',
    'access_token',
  ])('refuses subject_token_type=%s with invalid_request', async (type) => {
    const token = await t.userToken()
    const res = await t.post(t.form(token, { subject_token_type: type }))
    expect((await expectOAuthError(res, 400, 'invalid_request', [token])).error_description).toMatch(/subject_token_type/)
  })

  it.each([ACCESS_TOKEN_TYPE, JWT_TYPE])('accepts subject_token_type=%s for an IAM access token', async (type) => {
    const res = await t.post(t.form(await t.userToken(), { subject_token_type: type }))
    expect(res.status).toBe(200)
  })
})
