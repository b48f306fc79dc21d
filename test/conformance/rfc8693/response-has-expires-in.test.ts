// RFC 8693 §2.2.1: "expires_in RECOMMENDED. The validity lifetime, in seconds, of the token issued by the
// authorization server." docs/iam-and-wlcg.md §3.3: always send it.
import { describe, expect, it } from 'vitest'
import { AP1, IDTOKEN_TYPE, JWT_TYPE, payloadOf, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()

describe('RFC 8693 §2.2.1 expires_in', () => {
  it.each([
    [IDTOKEN_TYPE, {}],
    [JWT_TYPE, { audience: AP1 }],
  ])('is the %s lifetime in seconds: exactly exp - iat of the issued token', async (type, extra) => {
    const res = await t.post(t.form(await t.userToken(), { requested_token_type: type, ...extra }))
    expect(res.status).toBe(200)
    const body = await res.json() as { access_token: string; expires_in: number }
    expect(Number.isInteger(body.expires_in)).toBe(true)
    const claims = payloadOf(body.access_token) as { exp: number; iat: number }
    expect(body.expires_in).toBe(claims.exp - claims.iat)
    expect(body.expires_in).toBe(20 * 60) // the role's default lifetime
  })

  it('reports the lifetime the caller asked for when the policy allows it', async () => {
    const res = await t.post(t.form(await t.userToken(), { requested_token_type: JWT_TYPE, audience: AP1, lifetime: '900' }))
    expect(res.status).toBe(200)
    expect((await res.json() as { expires_in: number }).expires_in).toBe(900)
  })
})
