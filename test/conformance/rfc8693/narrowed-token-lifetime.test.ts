// RFC 6749 §5.1: "expires_in RECOMMENDED. The lifetime in seconds of the access token." Only recommended: an
// IAM may leave it out, and the narrowed token's own `exp` then says how long it lives. RFC 8693 §2.2.1
// has the broker report expires_in for the token it hands out. The role caps that lifetime (20 min here,
// docs/policies.md): a longer-lived IAM token is refused, however IAM states its life.
import { afterEach, describe, expect, it } from 'vitest'
import { ACCESS_TOKEN_TYPE, AP1, expectOAuthError, payloadOf, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()
afterEach(() => { t.iam.exchangedLifetime = 3600; t.iam.omitExpiresIn = false })

const narrowed = async () => t.post(t.form(await t.userToken(), { requested_token_type: ACCESS_TOKEN_TYPE, audience: AP1, scope: 'compute.read' }))

describe('an audience-narrowed IAM token lives no longer than the role allows', () => {
  it.each([false, true])('is refused when IAM gives it an hour (expires_in left out: %s)', async (omit) => {
    t.iam.exchangedLifetime = 3600
    t.iam.omitExpiresIn = omit
    await expectOAuthError(await narrowed(), 400, 'invalid_target')
  })

  // The exp is IAM's, read unverified: one already past (or an expires_in of 0 or less) leaves a token no
  // relying party accepts, and RFC 8693 §2.2.1's expires_in would be negative. Not relayed, as with no life.
  it.each([false, true])('is not relayed when IAM returns a token already expired (expires_in left out: %s)', async (omit) => {
    t.iam.exchangedLifetime = -60
    t.iam.omitExpiresIn = omit
    await expectOAuthError(await narrowed(), 503, 'temporarily_unavailable')
  })

  it('reports the life the token has when IAM leaves out expires_in', async () => {
    t.iam.exchangedLifetime = 600
    t.iam.omitExpiresIn = true
    const res = await narrowed()
    expect(res.status).toBe(200)
    const body = await res.json() as { access_token: string; expires_in: number }
    const left = (payloadOf(body.access_token).exp as number) - Math.floor(Date.now() / 1000)
    expect(Math.abs(body.expires_in - left)).toBeLessThanOrEqual(2)
  })
})
