// RFC 6749 §4.1.2.1 defines `temporarily_unavailable`: "The authorization server is currently unable to
// handle the request due to a temporary overloading or maintenance of the server." RFC 9110 §15.6.4: a
// 503 "MAY send a Retry-After header field to suggest an appropriate amount of time for the client to
// wait before retrying the request."
// Broker decision: when the bounded audit queue is full, issuance cannot be recorded now, so no token
// leaves and the client is told to come back: 503 temporarily_unavailable with Retry-After, never a 500.
import { describe, expect, it } from 'vitest'
import { ACCESS_TOKEN_TYPE, AP1, expectOAuthError, IDTOKEN_TYPE, JWT_TYPE, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()
// IAM's lifetime for narrowed tokens must fit the role's (20 min) for the access-token case to reach its audit record.
t.iam.exchangedLifetime = 600

describe('a full audit queue answers 503 temporarily_unavailable with Retry-After', () => {
  it.each([
    [IDTOKEN_TYPE, {}],
    [JWT_TYPE, { audience: AP1 }],
    [ACCESS_TOKEN_TYPE, { audience: AP1, scope: 'compute.read' }],
  ] as const)('for a valid %s request, and no token', async (type, extra) => {
    t.audit.mode = 'full'
    const token = await t.userToken()
    const res = await t.post(t.form(token, { requested_token_type: type, ...extra }))
    const body = await expectOAuthError(res, 503, 'temporarily_unavailable', [token])
    expect(Object.keys(body).sort()).toEqual(['error', 'error_description'])
    expect(body.error_description).not.toMatch(/audit store|writes waiting|\d+ /)
    expect(res.headers.get('retry-after')).toMatch(/^[1-9]\d*$/)
    expect(res.headers.get('pragma')).toBe('no-cache')
  })

  it('issues again once the queue has room (control)', async () => {
    expect((await t.post(t.form(await t.userToken()))).status).toBe(200)
  })
})
