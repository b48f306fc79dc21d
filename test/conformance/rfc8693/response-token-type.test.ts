// RFC 8693 §2.2.1: "token_type REQUIRED. A case-insensitive value specifying the method of using the
// access token issued, as specified in Section 7.1 of [RFC6749]. [...] If the issued token is not an
// access token or usable as an access token, then the token_type value N_A is used to indicate that an
// OAuth 2.0 token_type identifier is not applicable in that context."
// docs/iam-and-wlcg.md §3.3: Bearer for SciTokens, WLCG tokens and IAM access tokens; N_A for IDTOKENs.
import { afterEach, describe, expect, it } from 'vitest'
import { ACCESS_TOKEN_TYPE, AP1, IDTOKEN_TYPE, JWT_TYPE, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()
afterEach(() => { t.iam.exchangedLifetime = 3600 })

describe('RFC 8693 §2.2.1 token_type', () => {
  it('is N_A for an HTCondor IDTOKEN, which is not an HTTP bearer token', async () => {
    const res = await t.post(t.form(await t.userToken(), { requested_token_type: IDTOKEN_TYPE }))
    expect(res.status).toBe(200)
    expect((await res.json() as { token_type: string }).token_type).toBe('N_A')
  })

  it('is Bearer for a SciToken / WLCG JWT', async () => {
    const res = await t.post(t.form(await t.userToken(), { requested_token_type: JWT_TYPE, audience: AP1 }))
    expect(res.status).toBe(200)
    expect((await res.json() as { token_type: string }).token_type).toBe('Bearer')
  })

  it('is Bearer for an audience-narrowed IAM access token', async () => {
    t.iam.exchangedLifetime = 600
    const res = await t.post(t.form(await t.userToken(), { requested_token_type: ACCESS_TOKEN_TYPE, audience: AP1, scope: 'compute.read' }))
    expect(res.status).toBe(200)
    expect((await res.json() as { token_type: string }).token_type).toBe('Bearer')
  })
})
