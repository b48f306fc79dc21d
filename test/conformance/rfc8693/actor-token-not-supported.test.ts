// RFC 8693 §2.1: "actor_token OPTIONAL. A security token that represents the identity of the acting
// party." "actor_token_type [...] This is REQUIRED when the actor_token parameter is present in the
// request but MUST NOT be included otherwise."
// docs/iam-and-wlcg.md §3.1: delegation is not supported in v1: actor_token gives invalid_request "delegation not
// supported", mirroring IAM.
import { describe, expect, it } from 'vitest'
import { ACCESS_TOKEN_TYPE, expectOAuthError, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()

describe('RFC 8693 §2.1 actor_token (delegation) → invalid_request', () => {
  it('refuses actor_token with actor_token_type as delegation not supported, issuing nothing', async () => {
    const subject = await t.userToken()
    const actor = await t.userToken({ preferred_username: 'bob' })
    const res = await t.post(t.form(subject, { actor_token: actor, actor_token_type: ACCESS_TOKEN_TYPE }))
    expect((await expectOAuthError(res, 400, 'invalid_request', [subject, actor])).error_description).toMatch(/delegation not supported/)
  })

  it('refuses actor_token without actor_token_type', async () => {
    const res = await t.post(t.form(await t.userToken(), { actor_token: await t.userToken() }))
    await expectOAuthError(res, 400, 'invalid_request')
  })

  it('refuses actor_token_type without actor_token (MUST NOT be included otherwise)', async () => {
    const res = await t.post(t.form(await t.userToken(), { actor_token_type: ACCESS_TOKEN_TYPE }))
    await expectOAuthError(res, 400, 'invalid_request')
  })
})
