// RFC 6749 §3.2: "Request and response parameters MUST NOT be included more than once."
// RFC 6749 §5.2: "invalid_request The request [...] repeats a parameter, [...]". RFC 8693 §2.1 makes
// audience and resource the exceptions (audience-repeatable.test.ts, resource-repeatable.test.ts).
import { describe, expect, it } from 'vitest'
import { ACCESS_TOKEN_TYPE, GRANT_TYPE, IDTOKEN_TYPE, JWT_TYPE, expectOAuthError, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()

describe('RFC 6749 §3.2 a repeated parameter → invalid_request', () => {
  it('refuses two subject_token values, even two valid ones, naming the parameter', async () => {
    const a = await t.userToken()
    const b = await t.userToken({ preferred_username: 'bob' })
    const body = await expectOAuthError(await t.post(t.form(a, { subject_token: [a, b] })), 400, 'invalid_request', [a, b])
    expect(body.error_description).toMatch(/subject_token must not be repeated/)
  })

  it('refuses the same subject_token sent twice', async () => {
    const a = await t.userToken()
    await expectOAuthError(await t.post(t.form(a, { subject_token: [a, a] })), 400, 'invalid_request', [a])
  })

  it.each([
    ['grant_type', [GRANT_TYPE, GRANT_TYPE]],
    ['subject_token_type', [ACCESS_TOKEN_TYPE, ACCESS_TOKEN_TYPE]],
    ['requested_token_type', [IDTOKEN_TYPE, JWT_TYPE]],
    ['scope', ['condor:/READ', 'condor:/WRITE']],
    ['role', ['submit-user', 'submit-user']],
    ['lifetime', ['600', '900']],
  ])('refuses a repeated %s', async (name, values) => {
    const body = await expectOAuthError(await t.post(t.form(await t.userToken(), { [name]: values })), 400, 'invalid_request')
    expect(body.error_description).toMatch(new RegExp(`${name} must not be repeated`))
  })

  it('checks repetition before grant_type, so a duplicated grant_type is not unsupported_grant_type', async () => {
    await expectOAuthError(await t.post(t.form(await t.userToken(), { grant_type: [GRANT_TYPE, 'password'] })), 400, 'invalid_request')
  })
})
