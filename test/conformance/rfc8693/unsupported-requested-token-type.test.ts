// RFC 8693 §2.1: "requested_token_type OPTIONAL. An identifier, as described in Section 3, for the type
// of the requested security token." RFC 8693 §2.2.2: "If the request itself is not valid [...] The value
// of the error parameter MUST be the invalid_request error code."
// docs/iam-and-wlcg.md §3.2: the broker issues idtoken, jwt and access_token; refresh_token and id_token never.
import { describe, expect, it } from 'vitest'
import { expectOAuthError, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()

describe('RFC 8693 §2.1 unsupported requested_token_type → invalid_request', () => {
  it.each([
    'urn:ietf:params:oauth:token-type:refresh_token',
    'urn:ietf:params:oauth:token-type:id_token',
    'urn:ietf:params:oauth:token-type:saml1',
    'urn:ietf:params:oauth:token-type:saml2',
    'urn:example:unknown',
    'jwt',
    // Names every JavaScript object has: an unknown type all the same, never a lookup that finds something.
    'constructor',
    'toString',
    '__proto__',
    'hasOwnProperty',
  ])('refuses requested_token_type=%s with invalid_request and no token', async (type) => {
    const res = await t.post(t.form(await t.userToken(), { requested_token_type: type }))
    expect((await expectOAuthError(res, 400, 'invalid_request')).error_description).toMatch(/requested_token_type/)
  })
})
