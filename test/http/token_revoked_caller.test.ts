import { describe, expect, it } from 'vitest'
import { decodeCompact } from '../../src/issuance/jws.ts'
import { useTokenApp, type OAuthErrorBody } from '../conformance/support/token_app.ts'

/**
 * Revoking a caller or an issued identity stops new issuance at POST /token (through the real app,
 * pipeline, policy and revocation service); revoking a role does not.
 */
const t = await useTokenApp()

async function deniedRecord(requestId: string | null) {
  const page = await t.store.query({ limit: 1000, type: 'token.denied' })
  return page.records.map((r) => r.event).find((e) => e.requestId === requestId)
}

describe('POST /token after a revocation', () => {
  it('refuses a caller whose IAM sub was revoked, even with a token IAM minted afterwards, and audits it', async () => {
    const sub = 'revoked-user-1'
    expect((await t.post(t.form(await t.userToken({ sub })))).status).toBe(200)
    await t.revocations.revoke({ kind: 'sub', value: sub, reason: 'account compromised' }, { principal: 'test' })
    // IAM keeps minting tokens for the revoked account: a later iat must not slip past the revocation.
    const fresh = await t.userToken({ sub, iat: Math.floor(Date.now() / 1000) + 30 })
    const res = await t.post(t.form(fresh), { 'x-request-id': 'revoked-sub-1' })
    expect(res.status).toBe(400)
    const body = await res.json() as OAuthErrorBody
    expect(body).toEqual({ error: 'unauthorized_client', error_description: 'this caller has been revoked' })
    const denial = await deniedRecord(res.headers.get('x-request-id'))
    expect(denial).toMatchObject({ decision: 'deny', reason: 'unauthorized_client: this caller has been revoked', caller: { sub } })
  })

  it('refuses every caller of a revoked IAM client', async () => {
    const robot = () => t.iam.mint({ aud: 'https://broker.example.org', client_id: 'ctb-monitoring', sub: `robot-${Math.random()}` })
    expect((await t.post(t.form(await robot(), { role: 'monitoring' }))).status).toBe(200)
    await t.revocations.revoke({ kind: 'client', value: 'ctb-monitoring' }, { principal: 'test' })
    const res = await t.post(t.form(await robot(), { role: 'monitoring' }))
    expect(res.status).toBe(400)
    expect(await res.json()).toEqual({ error: 'unauthorized_client', error_description: 'client ctb-monitoring has been revoked' })
  })

  it('refuses to mint a revoked identity to any caller that would get it', async () => {
    const ok = await t.post(t.form(await t.userToken({ preferred_username: 'mallory' })))
    expect(ok.status).toBe(200)
    const { sub } = decodeCompact((await ok.json() as { access_token: string }).access_token)!.payload as { sub: string }
    expect(sub).toMatch(/^mallory@/)
    await t.revocations.revoke({ kind: 'sub', value: sub }, { principal: 'test' })
    // Another IAM account whose preferred_username maps to the same identity.
    const res = await t.post(t.form(await t.userToken({ preferred_username: 'mallory', sub: 'another-account' })))
    expect(res.status).toBe(400)
    expect(await res.json()).toEqual({ error: 'unauthorized_client', error_description: `identity ${sub} has been revoked` })
    // Other identities are unaffected.
    expect((await t.post(t.form(await t.userToken({ preferred_username: 'trent' })))).status).toBe(200)
  })

  it('keeps issuing a revoked role, with the bumped generation (old tokens die, new ones live)', async () => {
    const before = decodeCompact((await (await t.post(t.form(await t.userToken({ preferred_username: 'rolf' })))).json() as { access_token: string }).access_token)!.payload
    await t.revocations.revoke({ kind: 'role', value: 'submit-user' }, { principal: 'test' })
    const res = await t.post(t.form(await t.userToken({ preferred_username: 'rolf' })))
    expect(res.status).toBe(200)
    const after = decodeCompact((await res.json() as { access_token: string }).access_token)!.payload
    expect(after.ctb_gen).toBe((before.ctb_gen as number) + 1)
    expect(t.revocations.isRevoked(before)).toBe(true)
    expect(t.revocations.isRevoked(after)).toBe(false)
  })
})
