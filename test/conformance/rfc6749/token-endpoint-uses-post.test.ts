// RFC 6749 §3.2: "The client MUST use the HTTP "POST" method when making access token requests."
// RFC 8693 §2.1: "The client makes a token exchange request to the token endpoint with an extension grant
// type using the HTTP POST method."
// RFC 9110 §15.5.6: 405 Method Not Allowed "The origin server MUST generate an Allow header field in a
// 405 response containing a list of the target resource's currently supported methods."
// Broker decision: any other method on /token gets 405 with `Allow: POST` and an OAuth error body
// (invalid_request, JSON, no-store), never a 404 page, and never a token, even with a complete request
// in the query string.
import { describe, expect, it } from 'vitest'
import { encodeForm, expectOAuthError, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()

describe('RFC 6749 §3.2 the token endpoint accepts only POST', () => {
  it.each(['GET', 'PUT', 'PATCH', 'DELETE'])('answers %s with 405, Allow: POST and invalid_request JSON', async (method) => {
    const token = await t.userToken()
    const query = encodeForm(t.form(token))
    const withBody = method === 'PUT' || method === 'PATCH'
    const res = await t.request(withBody ? '/token' : `/token?${query}`, {
      method,
      ...(withBody ? { headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: query } : {}),
    })
    expect(res.headers.get('allow')).toBe('POST')
    const body = await expectOAuthError(res, 405, 'invalid_request', [token])
    expect(body.error_description).toMatch(/only POST/)
  })

  it('answers HEAD with the same 405 status and no body', async () => {
    const res = await t.request('/token', { method: 'HEAD' })
    expect(res.status).toBe(405)
    expect(res.headers.get('allow')).toBe('POST')
    expect(res.headers.get('cache-control')).toBe('no-store')
    expect(await res.text()).toBe('')
  })

  it('does not issue from query parameters on a POST either', async () => {
    const res = await t.request(`/token?${encodeForm(t.form(await t.userToken()))}`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: '' })
    await expectOAuthError(res, 400, 'invalid_request')
  })
})
