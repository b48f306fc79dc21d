// RFC 6585 §4: "The 429 status code indicates that the user has sent too many requests in a given amount
// of time ("rate limiting"). The response representations SHOULD include details explaining the
// condition, and MAY include a Retry-After header indicating how long to wait before making a new request."
// RFC 8628 §3.5 registers `slow_down` for a token-endpoint client polling too often.
// Broker decision (docs/rate-limits.md): a rate-limit refusal is 429 with the RFC 6749 §5.2 error body
// `slow_down`, Retry-After in whole seconds and no-store. A caller's first refusal in an audit window is
// one token.denied record; the rest of the window's refusals are only counted (token.denied.aggregate).
import { describe, expect, it } from 'vitest'
import { expectOAuthError, useTokenApp } from '../support/token_app.ts'

const CALLER_LIMIT = 3
const ROLE_LIMIT = 5
const t = await useTokenApp({ env: { CTB_RATE_LIMITS_CALLER_REQUESTS: String(CALLER_LIMIT), CTB_RATE_LIMITS_CALLER_PER: '1h', CTB_RATE_LIMITS_ROLE_REQUESTS: String(ROLE_LIMIT), CTB_RATE_LIMITS_ROLE_PER: '1h' } })

const deniedOf = async (sub: string) =>
  (await t.store.query({ limit: 1000, type: 'token.denied' })).records.filter((r) => r.event.caller?.sub === sub)

describe('a caller over its rate limit gets 429 slow_down with Retry-After', () => {
  it('serves the limit, then refuses the next request with the OAuth error body', async () => {
    const token = await t.userToken({ sub: 'alice-rl' })
    for (let i = 0; i < CALLER_LIMIT; i++) expect((await t.post(t.form(token))).status).toBe(200)
    const res = await t.post(t.form(token))
    const body = await expectOAuthError(res, 429, 'slow_down', [token])
    expect(Object.keys(body).sort()).toEqual(['error', 'error_description'])
    expect(body.error_description).toMatch(/^too many requests from this caller: at most 3 per 3600 s; retry after \d+ s$/)
    const retryAfter = res.headers.get('retry-after')
    expect(retryAfter).toMatch(/^[1-9]\d*$/)
    // The window is an hour and opened moments ago.
    expect(Number(retryAfter)).toBeGreaterThan(3500)
    expect(Number(retryAfter)).toBeLessThanOrEqual(3600)
    expect(res.headers.get('pragma')).toBe('no-cache')
  })

  it('records the first refusal once, and only counts the ones that follow in the window', async () => {
    const records = await deniedOf('alice-rl')
    expect(records).toHaveLength(1)
    expect(records[0]!.event).toMatchObject({ type: 'token.denied', role: 'submit-user', reason: expect.stringMatching(/^slow_down: too many requests from this caller/) })
    const before = t.refusals.pending
    const token = await t.userToken({ sub: 'alice-rl' })
    for (let i = 0; i < 4; i++) expect((await t.post(t.form(token))).status).toBe(429)
    expect(await deniedOf('alice-rl')).toHaveLength(1)
    expect(t.refusals.pending).toBe(before + 4)
  })

  it('refuses a role over its limit for every caller, naming the role', async () => {
    // Alice used 3 of the role's 5 (her refused requests took none of it).
    for (const sub of ['bob-rl', 'carol-rl']) expect((await t.post(t.form(await t.userToken({ sub }))))).toHaveProperty('status', 200)
    const res = await t.post(t.form(await t.userToken({ sub: 'dave-rl' })))
    const body = await expectOAuthError(res, 429, 'slow_down')
    expect(body.error_description).toMatch(/^too many requests for role 'submit-user': at most 5 per 3600 s; retry after \d+ s$/)
    expect(res.headers.get('retry-after')).toMatch(/^[1-9]\d*$/)
    expect(await deniedOf('dave-rl')).toHaveLength(1)
  })
})
