// RFC 8693 §2.2.2: "If [...] the subject_token [is] invalid for any reason, [...] The value of the error
// parameter MUST be the invalid_request error code."
// docs/iam-and-wlcg.md §3.1: exp/nbf are checked with 60 s tolerance. Bad input: not-yet-valid → OAuth error.
import { describe, expect, it } from 'vitest'
import { expectOAuthError, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()
const now = () => Math.floor(Date.now() / 1000)

describe('RFC 8693 §2.2.2 a not-yet-valid subject_token → invalid_request', () => {
  it('refuses a token whose nbf is beyond the tolerance', async () => {
    const token = await t.userToken({ nbf: now() + 600 })
    const body = await expectOAuthError(await t.post(t.form(token)), 400, 'invalid_request', [token])
    expect(body.error_description).toMatch(/not yet valid/)
  })

  it('refuses a token issued in the future beyond the tolerance', async () => {
    const n = now()
    const token = await t.userToken({ iat: n + 600, nbf: n - 10 })
    await expectOAuthError(await t.post(t.form(token)), 400, 'invalid_request', [token])
  })

  it('accepts a token whose nbf is within the tolerance (clock skew)', async () => {
    expect((await t.post(t.form(await t.userToken({ nbf: now() + 20 })))).status).toBe(200)
  })
})
