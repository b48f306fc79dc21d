// RFC 6749 §5.1: "The authorization server MUST include the HTTP "Cache-Control" response header field
// [RFC2616] with a value of "no-store" in any response containing tokens, credentials, or other sensitive
// information, as well as the "Pragma" response header field [RFC2616] with a value of "no-cache"."
// RFC 6749 §5.1: "The parameters are included in the entity-body of the HTTP response using the
// "application/json" media type as defined by [RFC4627]."
import { describe, expect, it } from 'vitest'
import { AP1, IDTOKEN_TYPE, JWT_TYPE, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()

describe('RFC 6749 §5.1 successful token responses are not cached', () => {
  it.each([
    [IDTOKEN_TYPE, {}],
    [JWT_TYPE, { audience: AP1 }],
  ])('sends Cache-Control: no-store and Pragma: no-cache with a %s, as JSON', async (type, extra) => {
    const res = await t.post(t.form(await t.userToken(), { requested_token_type: type, ...extra }))
    expect(res.status).toBe(200)
    expect(res.headers.get('cache-control')).toBe('no-store')
    expect(res.headers.get('pragma')).toBe('no-cache')
    expect(res.headers.get('content-type')).toMatch(/^application\/json\b/)
    expect(await res.json()).toHaveProperty('access_token')
  })
})
