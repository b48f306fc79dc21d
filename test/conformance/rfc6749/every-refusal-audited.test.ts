// RFC 6749 §5.2 says how a refusal looks on the wire; the broker adds what happens to it in the audit log.
// Broker decision (README, docs/audit.md): a refusal of a caller whose subject token verifies is one
// `token.denied` record naming the caller, the request id and the reason, whatever was wrong with the
// request. A refusal with nobody to name (unreadable body, a subject token that does not verify) is only
// counted, and written as one `token.denied.aggregate` record per flush, so garbage cannot fill the
// audit queue.
import { randomUUID } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { AP1, encodeForm, JWT_TYPE, useTokenApp } from '../support/token_app.ts'

const t = await useTokenApp()

const deniedFor = async (requestId: string) =>
  (await t.store.query({ limit: 1000, type: 'token.denied' })).records.filter((r) => r.event.requestId === requestId)

describe('a refusal of a verified caller is one token.denied record with caller, request id and reason', () => {
  it.each<[string, Record<string, string | string[] | undefined>, string]>([
    ['a host that is not a DNS name', { host: 'bad host!' }, 'invalid_request'],
    ['a site that is not a plain name', { site: 'a b' }, 'invalid_request'],
    ['a scope that is not printable ASCII', { scope: 'compute.read\u0001' }, 'invalid_request'],
    ['a lifetime that is not a number', { lifetime: '1h' }, 'invalid_request'],
    ['a repeated role', { role: ['submit-user', 'monitoring'] }, 'invalid_request'],
    ['an unknown requested_token_type', { requested_token_type: 'urn:example:nope' }, 'invalid_request'],
    ['another grant_type', { grant_type: 'client_credentials' }, 'unsupported_grant_type'],
    ['no role', { role: undefined }, 'invalid_request'],
    ['an actor_token', { actor_token: 'x', actor_token_type: JWT_TYPE }, 'invalid_request'],
    ['an audience the policy refuses', { requested_token_type: JWT_TYPE, audience: 'condor://nope.example:1' }, 'invalid_target'],
  ])('%s', async (_name, extra, error) => {
    // The caller's own X-Request-Id is never the audit id; the broker's id comes back in the response.
    const res = await t.post(t.form(await t.userToken(), extra), { 'x-request-id': `refusal-${randomUUID()}` })
    expect(res.status).toBe(400)
    const requestId = res.headers.get('x-request-id')!
    expect(requestId).toMatch(/^[0-9a-f-]{36}$/)
    expect((await res.json() as { error: string }).error).toBe(error)
    const records = await deniedFor(requestId)
    expect(records).toHaveLength(1)
    expect(records[0]!.event).toMatchObject({
      type: 'token.denied', decision: 'deny', requestId,
      caller: { iss: t.iam.issuer, sub: expect.any(String) },
      reason: expect.stringMatching(new RegExp(`^${error}: .+`)),
    })
  })
})

describe('a refusal with nobody to name is counted, not recorded one by one', () => {
  const FORM = { 'content-type': 'application/x-www-form-urlencoded' }
  it.each<[string, () => Promise<{ body: string; headers: Record<string, string> }>, number]>([
    ['a garbage subject token', async () => ({ body: encodeForm(t.form('not-a-jwt')), headers: FORM }), 400],
    ['a forged subject token', async () => ({ body: encodeForm(t.form(`${(await t.userToken()).slice(0, -6)}AAAAAA`)), headers: FORM }), 400],
    ['an expired subject token', async () => ({ body: encodeForm(t.form(await t.userToken({ exp: Math.floor(Date.now() / 1000) - 3600 }))), headers: FORM }), 400],
    ['a JSON body', async () => ({ body: JSON.stringify(t.form(await t.userToken())), headers: { 'content-type': 'application/json' } }), 400],
    ['an oversized body', async () => ({ body: `${encodeForm(t.form(await t.userToken()))}&pad=${'a'.repeat(40_000)}`, headers: FORM }), 400],
    ['another grant_type and no token', async () => ({ body: 'grant_type=password', headers: FORM }), 400],
    // Parse errors win over the token's verdict, and with a bad token nobody is named.
    ['a bad host with a garbage token', async () => ({ body: encodeForm(t.form('not-a-jwt', { host: 'bad host!' })), headers: FORM }), 400],
  ])('%s', async (_name, make, status) => {
    const { body, headers } = await make()
    const requestId = `garbage-${randomUUID()}`
    const pendingBefore = t.refusals.pending
    const res = await t.request('/token', { method: 'POST', headers: { ...headers, 'x-request-id': requestId }, body })
    expect(res.status).toBe(status)
    expect(await deniedFor(requestId)).toHaveLength(0)
    expect(t.refusals.pending).toBe(pendingBefore + 1)
  })

  it('writes what was counted as one token.denied.aggregate record on flush', async () => {
    const before = (await t.store.query({ limit: 1000, type: 'token.denied.aggregate' })).records.length
    for (let i = 0; i < 5; i++) await t.post(t.form('garbage'))
    const counted = t.refusals.pending
    expect(counted).toBeGreaterThanOrEqual(5)
    await t.refusals.flush()
    expect(t.refusals.pending).toBe(0)
    const records = (await t.store.query({ limit: 1000, type: 'token.denied.aggregate' })).records
    expect(records).toHaveLength(before + 1)
    const event = records[0]!.event
    expect(event).toMatchObject({ decision: 'deny', detail: { count: counted, topClients: expect.any(Array) } })
    const detail = event.detail as { byError: Record<string, number>; topClients: Array<{ count: number }>; otherClients: number }
    expect(Object.values(detail.byError).reduce((a, b) => a + b, 0)).toBe(counted)
    expect(detail.byError.invalid_request).toBeGreaterThanOrEqual(5)
    expect(detail.topClients.reduce((a, c) => a + c.count, 0) + detail.otherClients).toBe(counted)
    if (t.transport === 'socket') expect(detail.topClients[0]).toMatchObject({ address: expect.stringMatching(/127\.0\.0\.1/) })
    expect(event.requestId).toBeUndefined()
  })

  it('a valid request is not counted and issues (control)', async () => {
    const pendingBefore = t.refusals.pending
    expect((await t.post(t.form(await t.userToken(), { requested_token_type: JWT_TYPE, audience: AP1 }))).status).toBe(200)
    expect(t.refusals.pending).toBe(pendingBefore)
  })
})
