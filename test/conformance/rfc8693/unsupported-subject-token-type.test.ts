// RFC 8693 §2.1: "subject_token_type REQUIRED. An identifier, as described in Section 3, that indicates
// the type of the security token in the subject_token parameter." RFC 8693 §2.2.2: "If the request
// itself is not valid [...] The value of the error parameter MUST be the invalid_request error code."
// docs/iam-and-wlcg.md §3.1: access_token (and jwt) are accepted; anything else is invalid_request, except the
// two pilot types (docs/pilots.md): the HTCondor IDTOKEN type is a pilot's renewal, so an IAM token sent
// under it is an invalid pilot token (invalid_grant).
import { describe, expect, it } from 'vitest'
import { ACCESS_TOKEN_TYPE, JWT_TYPE, expectOAuthError, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()

describe('RFC 8693 §2.1 unsupported subject_token_type → invalid_request', () => {
  it.each([
    'urn:ietf:params:oauth:token-type:id_token',
    'urn:ietf:params:oauth:token-type:refresh_token',
    'urn:ietf:params:oauth:token-type:saml2',
    'access_token',
  ])('refuses subject_token_type=%s with invalid_request', async (type) => {
    const token = await t.userToken()
    const res = await t.post(t.form(token, { subject_token_type: type }))
    expect((await expectOAuthError(res, 400, 'invalid_request', [token])).error_description).toMatch(/subject_token_type/)
  })

  it('treats subject_token_type=urn:htcondor:token-type:idtoken as a renewal: an IAM token there is not a pilot token', async () => {
    const token = await t.userToken()
    const res = await t.post(t.form(token, { subject_token_type: 'urn:htcondor:token-type:idtoken' }))
    await expectOAuthError(res, 400, 'invalid_grant', [token])
  })

  it.each([ACCESS_TOKEN_TYPE, JWT_TYPE])('accepts subject_token_type=%s for an IAM access token', async (type) => {
    const res = await t.post(t.form(await t.userToken(), { subject_token_type: type }))
    expect(res.status).toBe(200)
  })
})
