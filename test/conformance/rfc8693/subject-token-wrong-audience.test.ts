// RFC 8693 §2.2.2: "If [...] the subject_token [is] invalid for any reason, or [is] unacceptable based on
// policy, [...] The value of the error parameter MUST be the invalid_request error code."
// docs/iam-and-wlcg.md §3.1 / iam_config: the broker accepts IAM tokens whose aud names the broker.
import { describe, expect, it } from 'vitest'
import { BROKER_AUDIENCE, expectOAuthError, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()

describe('RFC 8693 §2.2.2 a subject_token for another audience → invalid_request', () => {
  it.each([
    ['a single aud naming the broker', BROKER_AUDIENCE],
    ['an aud array containing the broker', ['https://other.example', BROKER_AUDIENCE]],
  ])('accepts %s (control)', async (_name, aud) => {
    expect((await t.post(t.form(await t.userToken({ aud })))).status).toBe(200)
  })

  it.each([
    ['another service', 'https://other.example'],
    ['the WLCG any-audience', 'https://wlcg.cern.ch/jwt/v1/any'],
    ['a near miss with a trailing slash', `${BROKER_AUDIENCE}/`],
    ['an array without the broker', ['https://a.example', 'https://b.example']],
  ])('refuses aud %s', async (_name, aud) => {
    const token = await t.userToken({ aud })
    const body = await expectOAuthError(await t.post(t.form(token)), 400, 'invalid_request', [token])
    expect(body.error_description).toMatch(/audience/)
  })

  it('refuses a token without aud', async () => {
    const token = await t.userToken({}, { omit: ['aud'] })
    await expectOAuthError(await t.post(t.form(token)), 400, 'invalid_request', [token])
  })
})
