// RFC 8693 §2.1: "subject_token REQUIRED. A security token that represents the identity of the party on
// behalf of whom the request is being made."
// RFC 6749 §5.2: "invalid_request The request is missing a required parameter, [...]"
import { describe, expect, it } from 'vitest'
import { expectOAuthError, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()

describe('RFC 8693 §2.1 subject_token is required', () => {
  it('refuses a request without subject_token with invalid_request naming the parameter', async () => {
    const res = await t.post(t.form('unused', { subject_token: undefined }))
    expect((await expectOAuthError(res, 400, 'invalid_request')).error_description).toMatch(/subject_token is required/)
  })

  it('does not take the subject token from an Authorization: Bearer header instead', async () => {
    const token = await t.userToken()
    const res = await t.post(t.form('unused', { subject_token: undefined }), { authorization: `Bearer ${token}` })
    expect((await expectOAuthError(res, 400, 'invalid_request', [token])).error_description).toMatch(/subject_token is required/)
  })
})
