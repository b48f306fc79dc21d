// RFC 8693 §2.1: "grant_type REQUIRED. The value urn:ietf:params:oauth:grant-type:token-exchange
// indicates that a token exchange is being performed."
// RFC 6749 §5.2: "invalid_request The request is missing a required parameter, includes an unsupported
// parameter value (other than grant type), [...]". A missing grant_type is a missing required parameter
// (invalid_request); a present but different one is unsupported_grant_type (unsupported-grant-type.test.ts).
import { describe, expect, it } from 'vitest'
import { expectOAuthError, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()

describe('RFC 8693 §2.1 grant_type is required', () => {
  it('refuses a request without grant_type with invalid_request naming the parameter', async () => {
    const res = await t.post(t.form(await t.userToken(), { grant_type: undefined }))
    expect((await expectOAuthError(res, 400, 'invalid_request')).error_description).toMatch(/grant_type is required/)
  })
})
