// RFC 6749 §5.2: "unsupported_grant_type The authorization grant type is not supported by the
// authorization server." RFC 8693 §2.1: "grant_type REQUIRED. The value
// urn:ietf:params:oauth:grant-type:token-exchange indicates that a token exchange is being performed."
import { describe, expect, it } from 'vitest'
import { expectOAuthError, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()

describe('RFC 6749 §5.2 / RFC 8693 §2.1 any other grant_type is unsupported_grant_type', () => {
  it.each([
    'client_credentials',
    'password',
    'refresh_token',
    'urn:ietf:params:oauth:grant-type:jwt-bearer',
    'urn:ietf:params:oauth:grant-type:token-exchange ', // trailing space: not the exact value
    'URN:IETF:PARAMS:OAUTH:GRANT-TYPE:TOKEN-EXCHANGE',
  ])('refuses grant_type=%j with unsupported_grant_type and no token', async (grantType) => {
    const token = await t.userToken()
    const res = await t.post(t.form(token, { grant_type: grantType }))
    await expectOAuthError(res, 400, 'unsupported_grant_type', [token])
  })

  it('accepts exactly urn:ietf:params:oauth:grant-type:token-exchange (control)', async () => {
    const res = await t.post(t.form(await t.userToken()))
    expect(res.status).toBe(200)
  })
})
