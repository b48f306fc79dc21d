// RFC 8693 §2.1: "subject_token_type REQUIRED. An identifier, as described in Section 3, that indicates
// the type of the security token in the subject_token parameter."
// RFC 6749 §5.2: "invalid_request The request is missing a required parameter, [...]"
import { describe, expect, it } from 'vitest'
import { expectOAuthError, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()

describe('RFC 8693 §2.1 subject_token_type is required', () => {
  it('refuses a valid subject token sent without subject_token_type, with invalid_request', async () => {
    const token = await t.userToken()
    const res = await t.post(t.form(token, { subject_token_type: undefined }))
    expect((await expectOAuthError(res, 400, 'invalid_request', [token])).error_description).toMatch(/subject_token_type is required/)
  })
})
