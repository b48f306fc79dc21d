// RFC 6749 §3.2: "Parameters sent without a value MUST be treated as if they were omitted from the
// request."
import { describe, expect, it } from 'vitest'
import { IDTOKEN_TYPE, expectOAuthError, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()

describe('RFC 6749 §3.2 a parameter without a value is treated as omitted', () => {
  it('issues the defaults for empty requested_token_type, scope, audience, resource and lifetime', async () => {
    const res = await t.post(t.form(await t.userToken(), { requested_token_type: '', scope: '', audience: '', resource: '', lifetime: '' }))
    expect(res.status).toBe(200)
    const body = await res.json() as { issued_token_type: string; scope: string; expires_in: number }
    expect(body).toMatchObject({ issued_token_type: IDTOKEN_TYPE, scope: 'condor:/READ condor:/WRITE', expires_in: 1200 })
  })

  it('ignores an empty actor_token and actor_token_type instead of refusing delegation', async () => {
    const res = await t.post(t.form(await t.userToken(), { actor_token: '', actor_token_type: '' }))
    expect(res.status).toBe(200)
  })

  it.each([
    ['grant_type', /grant_type is required/],
    ['subject_token', /subject_token is required/],
    ['subject_token_type', /subject_token_type is required/],
    ['role', /role is required/],
  ])('answers an empty %s exactly as a missing one', async (name, message) => {
    const token = await t.userToken()
    const empty = await expectOAuthError(await t.post(t.form(token, { [name]: '' })), 400, 'invalid_request')
    const missing = await expectOAuthError(await t.post(t.form(token, { [name]: undefined })), 400, 'invalid_request')
    expect(empty.error_description).toMatch(message)
    expect(empty).toEqual(missing)
  })

  it('a wholly empty body is a request with every parameter missing', async () => {
    const res = await t.request('/token', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: '' })
    expect((await expectOAuthError(res, 400, 'invalid_request')).error_description).toMatch(/grant_type is required/)
  })
})
