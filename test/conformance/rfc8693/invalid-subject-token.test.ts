// RFC 8693 §2.2.2: "If the request itself is not valid or if either the subject_token or actor_token are
// invalid for any reason, or are unacceptable based on policy, the authorization server MUST construct an
// error response, as specified in Section 5.2 of [RFC6749]. The value of the error parameter MUST be the
// invalid_request error code."
import { generateKeyPair, SignJWT } from 'jose'
import { describe, it } from 'vitest'
import { expectOAuthError, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()

describe('RFC 8693 §2.2.2 an invalid subject_token → invalid_request', () => {
  it('refuses a token whose signature was tampered with', async () => {
    const [h, p, s] = (await t.userToken()).split('.')
    const flipped = `${s!.slice(0, -4)}${s!.slice(-4) === 'AAAA' ? 'BBBB' : 'AAAA'}`
    await expectOAuthError(await t.post(t.form(`${h}.${p}.${flipped}`)), 400, 'invalid_request', [`${h}.${p}.${flipped}`])
  })

  it('refuses a token whose payload was changed after signing (more groups)', async () => {
    const [h, p, s] = (await t.userToken({ 'wlcg.groups': ['/cms'] })).split('.')
    const claims = JSON.parse(Buffer.from(p!, 'base64url').toString()) as Record<string, unknown>
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...claims, 'wlcg.groups': ['/htc/users'] })).toString('base64url')}.${s}`
    await expectOAuthError(await t.post(t.form(forged)), 400, 'invalid_request', [forged])
  })

  it('refuses a token signed by a key the issuer does not publish (untrusted signer)', async () => {
    const { privateKey } = await generateKeyPair('RS256')
    const now = Math.floor(Date.now() / 1000)
    const forged = await new SignJWT({ iss: t.iam.issuer, sub: 'x', aud: 'https://broker.example.org', 'wlcg.ver': '1.0', 'wlcg.groups': ['/htc/users'], preferred_username: 'alice', jti: 'j1', iat: now, exp: now + 600 })
      .setProtectedHeader({ alg: 'RS256', kid: 'attacker-key', typ: 'at+jwt' }).sign(privateKey)
    await expectOAuthError(await t.post(t.form(forged)), 400, 'invalid_request', [forged])
  })

  it.each([
    ['an opaque string', 'not-a-jwt'],
    ['two segments', 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0'],
    ['non-JSON segments', 'aaaa.bbbb.cccc'],
    ['whitespace inside', 'eyJhbGciOiJSUzI1NiJ9 .eyJzdWIiOiJ4In0.sig'],
  ])('refuses %s', async (_name, token) => {
    await expectOAuthError(await t.post(t.form(token)), 400, 'invalid_request')
  })
})
