// RFC 8693 §2.2.2: "If [...] the subject_token [is] invalid for any reason, [...] The value of the error
// parameter MUST be the invalid_request error code."
// docs/iam-and-wlcg.md §3.1: exp/nbf are checked with 60 s tolerance. Bad input: expired → OAuth error.
import { describe, expect, it } from 'vitest'
import { expectOAuthError, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()
const now = () => Math.floor(Date.now() / 1000)

describe('RFC 8693 §2.2.2 an expired subject_token → invalid_request', () => {
  it('refuses a token that expired beyond the 60 s tolerance', async () => {
    const n = now()
    const token = await t.userToken({ iat: n - 3600, nbf: n - 3600, exp: n - 120 })
    const body = await expectOAuthError(await t.post(t.form(token)), 400, 'invalid_request', [token])
    expect(body.error_description).toMatch(/expired/)
  })

  it('refuses a token without exp', async () => {
    const token = await t.userToken({}, { omit: ['exp'] })
    await expectOAuthError(await t.post(t.form(token)), 400, 'invalid_request', [token])
  })

  it('accepts a token that expired within the tolerance (clock skew)', async () => {
    const n = now()
    expect((await t.post(t.form(await t.userToken({ iat: n - 3600, nbf: n - 3600, exp: n - 20 }))))).toHaveProperty('status', 200)
  })
})
