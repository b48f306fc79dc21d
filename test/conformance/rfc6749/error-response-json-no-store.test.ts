// RFC 6749 §5.2: "The authorization server responds with an HTTP 400 (Bad Request) status code (unless
// specified otherwise) and includes the following parameters with the response: error REQUIRED. [...]
// error_description OPTIONAL. [...] The parameters are included in the entity-body of the HTTP response
// using the "application/json" media type as defined by [RFC4627]."
// docs/iam-and-wlcg.md §3.4: the error body is {"error", "error_description"} with the same no-store headers as success.
import { describe, expect, it } from 'vitest'
import { AP1, JWT_TYPE, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()

describe('RFC 6749 §5.2 error responses: 400, JSON {error, error_description}, not cached', () => {
  it.each([
    ['invalid_request', () => ({ subject_token: 'x', grant_type: undefined })],
    ['unsupported_grant_type', () => ({ grant_type: 'password' })],
    ['invalid_target', () => ({ requested_token_type: JWT_TYPE, audience: 'condor://nowhere.example:1' })],
    ['invalid_scope', () => ({ requested_token_type: JWT_TYPE, audience: AP1, scope: 'compute.cancel' })],
    ['unauthorized_client', () => ({ role: 'monitoring' })],
  ] as const)('%s', async (code, extra) => {
    const res = await t.post(t.form(await t.userToken(), extra()))
    expect(res.status).toBe(400)
    expect(res.headers.get('content-type')).toMatch(/^application\/json\b/)
    expect(res.headers.get('cache-control')).toBe('no-store')
    expect(res.headers.get('pragma')).toBe('no-cache')
    const body = await res.json() as Record<string, unknown>
    expect(Object.keys(body).sort()).toEqual(['error', 'error_description'])
    expect(body.error).toBe(code)
    expect(typeof body.error_description).toBe('string')
    expect((body.error_description as string).length).toBeGreaterThan(0)
  })
})
