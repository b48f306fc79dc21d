// RFC 8693 §2.1: "The value of the resource parameter MUST be an absolute URI, as specified by Section
// 4.3 of [RFC3986], that MAY include a query component and MUST NOT include a fragment component."
// A malformed parameter is invalid_request (RFC 8693 §2.2.2, RFC 6749 §5.2).
import { describe, expect, it } from 'vitest'
import { JWT_TYPE, STORAGE, expectOAuthError, payloadOf, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()

describe('RFC 8693 §2.1 resource must be an absolute URI without a fragment', () => {
  it.each([
    ['a relative reference', '/data'],
    ['a bare host name', 'storage.example.org'],
    ['a network-path reference', '//storage.example.org/data'],
    ['an absolute URI with a fragment', `${STORAGE}#part`],
    ['an absolute URI with an empty fragment', `${STORAGE}#`],
  ])('refuses %s with invalid_request', async (_name, resource) => {
    const res = await t.post(t.form(await t.userToken(), { requested_token_type: JWT_TYPE, resource }))
    expect((await expectOAuthError(res, 400, 'invalid_request')).error_description).toMatch(/resource must be an absolute URI without a fragment/)
  })

  it('accepts an absolute URI the policy allows', async () => {
    const res = await t.post(t.form(await t.userToken(), { requested_token_type: JWT_TYPE, resource: STORAGE }))
    expect(res.status).toBe(200)
    expect(payloadOf((await res.json() as { access_token: string }).access_token).aud).toBe(STORAGE)
  })
})
