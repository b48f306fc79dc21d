// RFC 8693 §2.1: "resource OPTIONAL. A URI that indicates the target service or resource where the client
// intends to use the requested security token. [...] Multiple resource parameters may be used to indicate
// that the issued token is intended to be used at the multiple resources listed."
// docs/iam-and-wlcg.md §3.1: resource is repeatable and follows the same rules as audience.
import { describe, expect, it } from 'vitest'
import { AP1, AP2, JWT_TYPE, STORAGE, expectOAuthError, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()

describe('RFC 8693 §2.1 resource is repeatable', () => {
  // "may": one token for several targets is the issuer's call. The broker issues one audience per token unless
  // the grant sets multiple_audiences (test/unit/policy_decide.test.ts); this app's grant does not.
  it('parses both resources, and refuses one token for the two services: invalid_target', async () => {
    const res = await t.post(t.form(await t.userToken(), { requested_token_type: JWT_TYPE, resource: [STORAGE, AP2] }))
    expect((await expectOAuthError(res, 400, 'invalid_target')).error_description).toBe('role submit-user issues a token for one audience at a time, not 2 (ask once per service)')
  })

  it('combines audience and resource into one set of targets: a resource other than the audience is a second target', async () => {
    const res = await t.post(t.form(await t.userToken(), { requested_token_type: JWT_TYPE, audience: AP1, resource: STORAGE }))
    expect((await expectOAuthError(res, 400, 'invalid_target')).error_description).toBe('role submit-user issues a token for one audience at a time, not 2 (ask once per service)')
  })

  it('takes every resource to the policy: a forbidden second resource is invalid_target', async () => {
    const res = await t.post(t.form(await t.userToken(), { requested_token_type: JWT_TYPE, resource: [STORAGE, 'https://elsewhere.example.org/'] }))
    expect((await expectOAuthError(res, 400, 'invalid_target')).error_description).toMatch(/elsewhere\.example\.org/)
  })
})
