// RFC 6749 §5.2: "invalid_scope The requested scope is invalid, unknown, malformed, or exceeds the scope
// granted by the resource owner."
// docs/iam-and-wlcg.md §3.1: scope must be a subset of what the policy allows, otherwise invalid_scope. wider
// requests are refused, not silently trimmed (unless the policy says "up to"; this one does not).
import { describe, expect, it } from 'vitest'
import { AP1, IDTOKEN_TYPE, JWT_TYPE, expectOAuthError, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()

describe('RFC 6749 §5.2 scope wider than the policy → invalid_scope', () => {
  it.each([
    ['a SciToken scope beyond the role', JWT_TYPE, 'compute.read compute.modify'],
    ['a SciToken scope of another kind', JWT_TYPE, 'storage.read:/'],
    ['an IDTOKEN authorization beyond the role', IDTOKEN_TYPE, 'condor:/READ condor:/ADMINISTRATOR'],
    ['an unknown IDTOKEN authorization', IDTOKEN_TYPE, 'condor:/EVERYTHING'],
  ])('refuses %s, with no token and nothing trimmed', async (_name, type, scope) => {
    const res = await t.post(t.form(await t.userToken(), { requested_token_type: type, audience: type === JWT_TYPE ? AP1 : [], scope }))
    await expectOAuthError(res, 400, 'invalid_scope')
  })

  it('issues a narrower scope than the maximum (control)', async () => {
    const res = await t.post(t.form(await t.userToken(), { requested_token_type: IDTOKEN_TYPE, scope: 'condor:/READ' }))
    expect(res.status).toBe(200)
    expect((await res.json() as { scope: string }).scope).toBe('condor:/READ')
  })
})
