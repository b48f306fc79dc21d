// RFC 6749 §5.1: "If the access token request is valid and authorized, the authorization server issues the
// access token [...]" — here only once the issuance is audited.
// docs/iam-and-wlcg.md §3.4: "Every outcome, success or error, is written to the audit log"; STYLE (Vault): "the audit
// record is written before the request is served; if auditing fails, the response is withheld (fail
// closed)".
// How the refusal looks: RFC 6749 §4.1.2.1 defines `temporarily_unavailable` ("The authorization server is
// currently unable to handle the request due to a temporary overloading or maintenance of the server"), and
// RFC 9110 §15.6.4 lets a 503 carry Retry-After. A store that cannot commit for an outage (its database
// unreachable, read-only, failing I/O) is exactly that, so the client is told to come back: 503
// temporarily_unavailable with Retry-After, still with no token. A failure that is no outage (a bug in the
// write path) stays an internal error: 500 server_error and nothing else.
import { describe, expect, it } from 'vitest'
import { ACCESS_TOKEN_TYPE, AP1, IDTOKEN_TYPE, JWT_TYPE, useTokenApp, type AuditMode } from '../support/token_app.ts'

const t = await useTokenApp()
// IAM's lifetime for narrowed tokens must fit the role's (20 min) for the access-token case to reach its audit record.
t.iam.exchangedLifetime = 600

/** One valid request per token kind the broker hands out: minted IDTOKEN, minted SciToken, IAM-narrowed access token. */
const KINDS = [
  [IDTOKEN_TYPE, {}],
  [JWT_TYPE, { audience: AP1 }],
  [ACCESS_TOKEN_TYPE, { audience: AP1, scope: 'compute.read' }],
] as const
// `failing` rejects at once; `slow-failing` rejects only after a while, so a token handed out before its
// record committed (a missing await) would already have left.
const MODES: AuditMode[] = ['failing', 'slow-failing']
const CASES = MODES.flatMap((mode) => KINDS.map(([type, extra]) => [type, mode, extra] as const))

describe('fail closed: an audit store that cannot record withholds the token', () => {
  const count = async () => (await t.store.query({ limit: 1000, type: 'token.issued' })).records.length

  it.each(CASES)('answers a valid %s request with 503 temporarily_unavailable, Retry-After and no token (audit %s)', async (type, mode, extra) => {
    const before = await count()
    t.audit.mode = mode
    const refusedBefore = t.audit.refused
    const token = await t.userToken()
    const res = await t.post(t.form(token, { requested_token_type: type, ...extra }))
    const text = await res.text()
    expect(res.status).toBe(503)
    expect(res.headers.get('cache-control')).toBe('no-store')
    expect(res.headers.get('content-type')).toMatch(/^application\/json\b/)
    // RFC 9110 §10.2.3: delay-seconds.
    expect(res.headers.get('retry-after')).toMatch(/^[1-9]\d*$/)
    const body = JSON.parse(text) as Record<string, unknown>
    expect(Object.keys(body).sort()).toEqual(['error', 'error_description'])
    expect(body.error).toBe('temporarily_unavailable')
    // Names nothing of the store: no path, no SQLite or PostgreSQL message.
    expect(body.error_description).not.toMatch(/readonly|I\/O|sqlite|postgres|\/var\//i)
    expect(text).not.toContain(token.slice(-20))
    // Exactly one write was tried, the issuance's (so the 503 is the audit's doing, not an earlier refusal):
    // the refusal's own record is not tried against the store that has just failed (docs/audit.md).
    expect(t.audit.refused).toBe(refusedBefore + 1)
    t.audit.mode = 'ok'
    expect(await count()).toBe(before)
  })

  it.each(KINDS)('keeps a write path that fails with a bug at 500 {"error":"server_error"}, no Retry-After, no token (%s)', async (type, extra) => {
    const before = await count()
    t.audit.mode = 'broken'
    const refusedBefore = t.audit.refused
    const token = await t.userToken()
    const res = await t.post(t.form(token, { requested_token_type: type, ...extra }))
    const text = await res.text()
    expect(res.status).toBe(500)
    expect(JSON.parse(text)).toEqual({ error: 'server_error' })
    expect(res.headers.get('retry-after')).toBeNull()
    expect(text).not.toContain(token.slice(-20))
    expect(t.audit.refused).toBe(refusedBefore + 1)
    t.audit.mode = 'ok'
    expect(await count()).toBe(before)
  })

  it('still refuses a bad request with its own error (a broken audit store cannot turn a refusal into a token or a 500)', async () => {
    t.audit.failing = true
    const res = await t.post(t.form(await t.userToken(), { requested_token_type: JWT_TYPE, audience: 'condor://nope.example:1' }))
    expect(res.status).toBe(400)
    expect((await res.json() as { error: string }).error).toBe('invalid_target')
  })

  it('issues and records again once the store recovers (control)', async () => {
    const before = await count()
    const res = await t.post(t.form(await t.userToken()))
    expect(res.status).toBe(200)
    expect(await count()).toBe(before + 1)
  })
})
