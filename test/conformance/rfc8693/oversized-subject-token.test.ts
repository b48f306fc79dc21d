// RFC 8693 §2.2.2: "If [...] the subject_token [is] invalid for any reason, [...] The value of the error
// parameter MUST be the invalid_request error code."
// Bad input: oversized input gets an OAuth error, never a 500. The broker refuses subject
// tokens over 16 KiB before any parsing or signature work.
import { describe, expect, it } from 'vitest'
import { expectOAuthError, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()
const LIMIT = 16 * 1024

describe('RFC 8693 §2.2.2 an oversized subject_token → invalid_request', () => {
  it('refuses a subject_token one byte over 16 KiB, without contacting IAM', async () => {
    const before = { ...t.iam.counts }
    const token = `${(await t.userToken()).split('.').slice(0, 2).join('.')}.${'A'.repeat(LIMIT)}`
    expect(token.length).toBeGreaterThan(LIMIT)
    const body = await expectOAuthError(await t.post(t.form(token)), 400, 'invalid_request', [token])
    expect(body.error_description).toMatch(/larger than 16384 bytes/)
    expect(t.iam.counts).toEqual(before)
  })

  it('handles a 16 KiB token as an ordinary invalid token (limit is inclusive)', async () => {
    const token = `eyJhbGciOiJSUzI1NiJ9.${'A'.repeat(LIMIT - 21)}`
    expect(token.length).toBe(LIMIT)
    const body = await expectOAuthError(await t.post(t.form(token)), 400, 'invalid_request')
    expect(body.error_description).not.toMatch(/larger than/)
  })
})
