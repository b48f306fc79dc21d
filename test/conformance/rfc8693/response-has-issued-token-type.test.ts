// RFC 8693 §2.2.1: "issued_token_type REQUIRED. An identifier, as described in Section 3, for the
// representation of the issued security token."
// RFC 8693 §2.1: "requested_token_type [...] If the requested type is unspecified, the issued token type
// is at the discretion of the authorization server" (here: the role's default_token_kind).
import { afterEach, describe, expect, it } from 'vitest'
import { ACCESS_TOKEN_TYPE, AP1, IDTOKEN_TYPE, JWT_TYPE, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()
afterEach(() => { t.iam.exchangedLifetime = 3600 })

describe('RFC 8693 §2.2.1 issued_token_type', () => {
  it.each([
    [IDTOKEN_TYPE, {}],
    [JWT_TYPE, { audience: AP1 }],
    [ACCESS_TOKEN_TYPE, { audience: AP1, scope: 'compute.read' }],
  ])('is %s when that type was requested', async (type, extra) => {
    t.iam.exchangedLifetime = 600 // within the role's 20 min default, so the narrowed IAM token is acceptable
    const res = await t.post(t.form(await t.userToken(), { requested_token_type: type, ...extra }))
    expect(res.status).toBe(200)
    expect((await res.json() as { issued_token_type: string }).issued_token_type).toBe(type)
  })

  it('names the type the broker chose when none was requested', async () => {
    const res = await t.post(t.form(await t.userToken()))
    expect(res.status).toBe(200)
    const body = await res.json() as { issued_token_type: string; access_token: string }
    expect(body.issued_token_type).toBe(IDTOKEN_TYPE)
    // And it really is an HTCondor IDTOKEN (iss is the trust domain, no aud).
    expect(JSON.parse(Buffer.from(body.access_token.split('.')[1]!, 'base64url').toString())).not.toHaveProperty('aud')
  })
})
