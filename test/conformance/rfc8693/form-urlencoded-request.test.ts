// RFC 8693 §2.1: "The following parameters are included in the HTTP request entity-body using the
// application/x-www-form-urlencoded format with a character encoding of UTF-8 as described in Appendix B
// of [RFC6749]."
// docs/iam-and-wlcg.md §3.4: the wrong content type is invalid_request.
import { describe, expect, it } from 'vitest'
import { encodeForm, expectOAuthError, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()

describe('RFC 8693 §2.1 the request body is application/x-www-form-urlencoded', () => {
  it('refuses the same parameters as a JSON body with invalid_request', async () => {
    const token = await t.userToken()
    const res = await t.request('/token', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(t.form(token)) })
    expect((await expectOAuthError(res, 400, 'invalid_request', [token])).error_description).toMatch(/x-www-form-urlencoded/)
  })

  it('refuses a form-encoded body labelled with another type', async () => {
    const token = await t.userToken()
    for (const type of ['text/plain', 'multipart/form-data; boundary=x', 'application/x-www-form-urlencodedx']) {
      const res = await t.request('/token', { method: 'POST', headers: { 'content-type': type }, body: encodeForm(t.form(token)) })
      await expectOAuthError(res, 400, 'invalid_request', [token])
    }
  })

  it('refuses a body without a Content-Type', async () => {
    const res = await t.request('/token', { method: 'POST', body: new Blob([encodeForm(t.form(await t.userToken()))]) })
    expect(res.headers.get('content-type')).toMatch(/json/)
    await expectOAuthError(res, 400, 'invalid_request')
  })

  it.each(['application/x-www-form-urlencoded; charset=UTF-8', 'Application/X-WWW-Form-Urlencoded'])('accepts %s', async (type) => {
    const res = await t.request('/token', { method: 'POST', headers: { 'content-type': type }, body: encodeForm(t.form(await t.userToken())) })
    expect(res.status).toBe(200)
  })

  it.each(['+', '%20'])('decodes percent-encoding: a space written as %s separates scopes', async (space) => {
    const body = `${encodeForm(t.form(await t.userToken()))}&scope=condor%3A%2FREAD${space}condor%3A%2FWRITE`
    const res = await t.request('/token', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body })
    expect(res.status).toBe(200)
    expect((await res.json() as { scope: string }).scope).toBe('condor:/READ condor:/WRITE')
  })
})
