// RFC 8693 §2.2.2: "If [...] the subject_token [is] invalid for any reason, [...] The value of the error
// parameter MUST be the invalid_request error code."
// Bad input: an unsigned (`alg: none`) token gets an OAuth error and no token; never a 500.
import { describe, expect, it } from 'vitest'
import { b64json } from '../../support/iam.ts'
import { expectOAuthError, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()

describe('RFC 8693 §2.2.2 an unsigned (alg none) subject_token → invalid_request', () => {
  it.each(['none', 'None', 'NONE'])('refuses alg %s carrying otherwise valid claims, without fetching keys', async (alg) => {
    const [, payload] = (await t.userToken()).split('.')
    const jwksBefore = t.iam.counts.jwks
    for (const sig of ['', 'c2lnbmF0dXJl']) {
      const token = `${b64json({ alg, typ: 'at+jwt' })}.${payload}.${sig}`
      const body = await expectOAuthError(await t.post(t.form(token)), 400, 'invalid_request', [token])
      expect(body.error_description).toMatch(/signed with one of/)
    }
    expect(t.iam.counts.jwks).toBe(jwksBefore)
  })
})
