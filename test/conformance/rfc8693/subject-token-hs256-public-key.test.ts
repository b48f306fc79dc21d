// RFC 8693 §2.2.2: "If [...] the subject_token [is] invalid for any reason, [...] The value of the error
// parameter MUST be the invalid_request error code."
// Bad input: a wrong-algorithm token (HS256 keyed with IAM's public key, the classic
// RS/HS confusion) gets an OAuth error and no token; never a 500.
import { exportJWK, SignJWT } from 'jose'
import { describe, expect, it } from 'vitest'
import { expectOAuthError, payloadOf, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()

describe('RFC 8693 §2.2.2 HS256 signed with the IAM public key → invalid_request', () => {
  it.each(['pem', 'jwk-n'])('refuses HS256 keyed with the public key as %s, without fetching keys', async (form) => {
    const claims = payloadOf(await t.userToken())
    const secret = form === 'pem' ? await t.iam.publicKeyPem() : String((await exportJWK(t.iam.signingKey.publicKey)).n)
    const jwksBefore = t.iam.counts.jwks
    const forged = await new SignJWT(claims).setProtectedHeader({ alg: 'HS256', kid: t.iam.signingKey.kid, typ: 'at+jwt' }).sign(new TextEncoder().encode(secret))
    const body = await expectOAuthError(await t.post(t.form(forged)), 400, 'invalid_request', [forged])
    expect(body.error_description).toMatch(/signed with one of RS256, ES256/)
    expect(t.iam.counts.jwks).toBe(jwksBefore)
  })
})
