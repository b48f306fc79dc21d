// RFC 8693 §2.1: "resource OPTIONAL. A URI that indicates the target service or resource where the client
// intends to use the requested security token. [...] Multiple resource parameters may be used to indicate
// that the issued token is intended to be used at the multiple resources listed."
// docs/iam-and-wlcg.md §3.1: resource is repeatable and follows the same rules as audience.
import { describe, expect, it } from 'vitest'
import { AP1, AP2, JWT_TYPE, STORAGE, expectOAuthError, payloadOf, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()

describe('RFC 8693 §2.1 resource is repeatable', () => {
  it('issues one SciToken whose aud lists both requested resources', async () => {
    const res = await t.post(t.form(await t.userToken(), { requested_token_type: JWT_TYPE, resource: [STORAGE, AP2] }))
    expect(res.status).toBe(200)
    expect(payloadOf((await res.json() as { access_token: string }).access_token).aud).toEqual([STORAGE, AP2])
  })

  it('combines audience and resource into one set of targets', async () => {
    const res = await t.post(t.form(await t.userToken(), { requested_token_type: JWT_TYPE, audience: AP1, resource: STORAGE }))
    expect(res.status).toBe(200)
    expect(payloadOf((await res.json() as { access_token: string }).access_token).aud).toEqual([AP1, STORAGE])
  })

  it('takes every resource to the policy: a forbidden second resource is invalid_target', async () => {
    const res = await t.post(t.form(await t.userToken(), { requested_token_type: JWT_TYPE, resource: [STORAGE, 'https://elsewhere.example.org/'] }))
    expect((await expectOAuthError(res, 400, 'invalid_target')).error_description).toMatch(/elsewhere\.example\.org/)
  })
})
