// RFC 8693 §2.2.2: "If [...] the subject_token [is] invalid for any reason, [...] the authorization server
// MUST construct an error response, as specified in Section 5.2 of [RFC6749]."
// docs/iam-and-wlcg.md §3.4: "Never echo tokens in error_description." no token or secret in any error.
import { describe, expect, it } from 'vitest'
import { AP1, JWT_TYPE, expectOAuthError, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()

describe('RFC 8693 §2.2.2 error responses never contain the subject token', () => {
  it.each([
    ['a tampered token', async () => { const [h, p] = (await t.userToken()).split('.'); return `${h}.${p}.${'x'.repeat(40)}` }, {}, 'invalid_request'],
    ['an expired token', () => t.userToken({ exp: Math.floor(Date.now() / 1000) - 3600 }), {}, 'invalid_request'],
    ['a valid token with a forbidden audience', () => t.userToken(), { requested_token_type: JWT_TYPE, audience: 'condor://x.example:1' }, 'invalid_target'],
    ['a valid token with too wide a scope', () => t.userToken(), { requested_token_type: JWT_TYPE, audience: AP1, scope: 'compute.modify' }, 'invalid_scope'],
    ['a valid token of a caller outside the policy', () => t.userToken({ 'wlcg.groups': ['/other'] }), {}, 'unauthorized_client'],
    ['a valid token and a duplicated parameter', () => t.userToken(), { role: ['submit-user', 'job'] }, 'invalid_request'],
  ] as const)('for %s', async (_name, make, extra, code) => {
    const token = await make()
    const res = await t.post(t.form(token, extra as Record<string, string | string[]>))
    const body = await expectOAuthError(res, 400, code, [token])
    const text = JSON.stringify(body)
    // No segment of the token (header, payload or signature) appears anywhere in the response.
    for (const segment of token.split('.').filter((s) => s.length >= 16)) expect(text).not.toContain(segment.slice(0, 16))
  })

  it('also when the token is placed in another parameter', async () => {
    const token = await t.userToken()
    const res = await t.post(t.form(token, { role: token }))
    const text = JSON.stringify(await expectOAuthError(res, 400, 'invalid_request', [token]))
    expect(text).not.toContain(token.slice(0, 16))
  })
})
