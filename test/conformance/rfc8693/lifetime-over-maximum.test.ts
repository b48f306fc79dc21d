// RFC 8693 §2.2.2 reserves invalid_target for "any target service indicated by the resource or audience
// parameters"; RFC 6749 §5.2 invalid_request covers "an invalid parameter value". A lifetime is not a
// target: one beyond what the policy allows is invalid_request, whatever the audience.
import { describe, expect, it } from 'vitest'
import { AP1, IDTOKEN_TYPE, JWT_TYPE, expectOAuthError, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()
/** The submit-user grant's maximum in the conformance policy: 6 h. */
const MAX = 6 * 3600

describe('a lifetime above the policy maximum → invalid_request, not invalid_target', () => {
  it.each([
    ['an IDTOKEN', { requested_token_type: IDTOKEN_TYPE }],
    ['a SciToken for an allowed audience', { requested_token_type: JWT_TYPE, audience: AP1 }],
  ])('refuses %s living one second too long', async (_name, extra) => {
    const res = await t.post(t.form(await t.userToken(), { ...extra, lifetime: String(MAX + 1) }))
    const body = await expectOAuthError(res, 400, 'invalid_request')
    expect(body.error_description).toMatch(/lifetime/)
  })

  it('issues at exactly the maximum (control)', async () => {
    const res = await t.post(t.form(await t.userToken(), { requested_token_type: IDTOKEN_TYPE, lifetime: String(MAX) }))
    expect(res.status).toBe(200)
    expect((await res.json() as { expires_in: number }).expires_in).toBe(MAX)
  })
})
