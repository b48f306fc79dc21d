// RFC 6749 §5.2: "error_description OPTIONAL. Human-readable ASCII [USASCII] text providing additional
// information, used to assist the client developer in understanding the error that occurred. Values for
// the "error_description" parameter MUST NOT include characters outside the set %x20-21 / %x23-5B / %x5D-7E."
import { describe, expect, it } from 'vitest'
import { AP1, JWT_TYPE, expectOAuthError, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()
/** %x20-21 / %x23-5B / %x5D-7E: printable ASCII without `"` and `\`. */
const ALLOWED = /^[\x20-\x21\x23-\x5b\x5d-\x7e]*$/

describe('RFC 6749 §5.2 error_description character set', () => {
  it.each([
    ['an audience with quotes and backslashes', { audience: 'condor://evil"\\x.example:9618' }, 'invalid_target'],
    ['a long audience the broker shortens', { audience: `condor://${'a'.repeat(200)}.example:9618` }, 'invalid_target'],
    ['a scope with a quote', { scope: 'compute.read "compute.modify' }, 'invalid_scope'],
  ])('keeps error_description to the allowed set for %s', async (_name, extra, code) => {
    const res = await t.post(t.form(await t.userToken(), { requested_token_type: JWT_TYPE, audience: AP1, ...extra }))
    const body = await expectOAuthError(res, 400, code)
    expect(body.error_description).toBeTruthy()
    expect(body.error_description).toMatch(ALLOWED)
  })

  it('keeps error_description to the allowed set for parameter errors', async () => {
    const res = await t.post(t.form(await t.userToken(), { resource: 'https://x.example/#"frag"' }))
    expect((await expectOAuthError(res, 400, 'invalid_request')).error_description).toMatch(ALLOWED)
  })
})
