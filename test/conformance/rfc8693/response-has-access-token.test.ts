// RFC 8693 §2.2.1: "access_token REQUIRED. The security token issued by the authorization server in
// response to the token exchange request. [...] The identifier access_token is used for historical
// reasons and the issued token need not be an OAuth access token."
import { describe, expect, it } from 'vitest'
import { IDTOKEN_TYPE, JWT_TYPE, AP1, BROKER_ISSUER, TRUST_DOMAIN, payloadOf, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()

describe('RFC 8693 §2.2.1 access_token', () => {
  it('carries an issued IDTOKEN in access_token, even though it is not an OAuth access token', async () => {
    const res = await t.post(t.form(await t.userToken(), { requested_token_type: IDTOKEN_TYPE }))
    expect(res.status).toBe(200)
    const body = await res.json() as Record<string, unknown>
    expect(typeof body.access_token).toBe('string')
    expect(payloadOf(body.access_token as string)).toMatchObject({ iss: TRUST_DOMAIN, sub: 'alice@pool.example.org' })
  })

  it('carries an issued SciToken in access_token', async () => {
    const res = await t.post(t.form(await t.userToken(), { requested_token_type: JWT_TYPE, audience: AP1 }))
    expect(res.status).toBe(200)
    const body = await res.json() as Record<string, unknown>
    expect(payloadOf(body.access_token as string)).toMatchObject({ iss: BROKER_ISSUER, sub: 'alice@pool.example.org', aud: AP1 })
  })
})
