// RFC 8693 §2.2.2: "If [...] the subject_token [is] invalid for any reason, or [is] unacceptable based on
// policy, [...] The value of the error parameter MUST be the invalid_request error code."
// docs/iam-and-wlcg.md §1.2 / §3.1: IAM's issuer is compared exactly, trailing slash included (never normalised).
import { describe, expect, it } from 'vitest'
import { expectOAuthError, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()

describe('RFC 8693 §2.2.2 a subject_token from an untrusted issuer → invalid_request', () => {
  it('trusts the configured issuer with its trailing slash (control)', async () => {
    expect(t.iam.issuer).toBe('https://iam.test.example/')
    expect((await t.post(t.form(await t.userToken()))).status).toBe(200)
  })

  it.each([
    ['without the trailing slash', 'https://iam.test.example'],
    ['with a doubled trailing slash', 'https://iam.test.example//'],
    ['over http', 'http://iam.test.example/'],
    ['with different case', 'https://IAM.test.example/'],
    ['with a path appended', 'https://iam.test.example/realm/'],
    ['from another host', 'https://iam.evil.example/'],
  ])('refuses iss %s even when signed by the trusted IAM key', async (_name, iss) => {
    const token = await t.userToken({ iss })
    const body = await expectOAuthError(await t.post(t.form(token)), 400, 'invalid_request', [token])
    expect(body.error_description).toMatch(/issuer/)
  })
})
