import { beforeEach, describe, expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/audit_log.ts'
import { useCredentialsApp } from '../support/credentials_app.ts'

/**
 * Every refusal of a job token after the credd was authenticated is on record as token.denied, naming
 * the credential and the reason, for both provider kinds (docs/job-credentials.md, docs/adr/0001: denials
 * are recorded best effort, and a store that cannot take the record does not change the answer).
 */
const t = await useCredentialsApp()

beforeEach(() => {
  t.iam.rotateRefreshTokens = true
})

async function registered(user: string, provider: string): Promise<void> {
  const res = await t.register(await t.userToken({ preferred_username: user, sub: `${user}-sub` }), { provider })
  expect(res.status).toBe(201)
}

async function denialsFor(user: string, provider: string): Promise<AuditEvent[]> {
  const records = (await t.store.query({ limit: 500, type: 'token.denied' })).records.map((r) => r.event)
  return records.filter((e) => {
    const c = (e.detail as { credential?: { user?: string; provider?: string } } | undefined)?.credential
    return c?.user === user && c.provider === provider
  })
}

describe('job-token refusals on record', () => {
  for (const provider of ['cms', 'se-storage']) {
    it(`records the refusal of a revoked credential (${provider})`, async () => {
      const user = provider === 'cms' ? 'rosa' : 'rudi'
      await registered(user, provider)
      const del = await t.app.request(`/v1/credentials/${user}/${provider}`, { method: 'DELETE', headers: { authorization: `Bearer ${t.adminToken}` } })
      expect(del.status).toBe(200)
      const res = await t.jobToken(user, provider, t.creddToken())
      expect(res.status).toBe(403)
      const denied = await denialsFor(user, provider)
      expect(denied).toHaveLength(1)
      expect(denied[0]).toMatchObject({
        decision: 'deny', caller: { sub: 'credd-ap1@aps.pool.example.org' },
        reason: expect.stringMatching(/^access_denied: .*revoked/),
        detail: { credential: { user, provider } },
      })
    })

    it(`records the refusal of a revoked caller (${provider})`, async () => {
      const user = provider === 'cms' ? 'sven' : 'sina'
      await registered(user, provider)
      await t.revocations.revoke({ kind: 'sub', value: `${user}-sub` }, { principal: 'test' })
      const res = await t.jobToken(user, provider, t.creddToken())
      expect(res.status).toBe(403)
      const denied = await denialsFor(user, provider)
      expect(denied).toHaveLength(1)
      expect(denied[0]).toMatchObject({ decision: 'deny', reason: expect.stringMatching(/^access_denied: /), detail: { credential: { user, provider } } })
    })
  }

  it('records the refusal of an unknown credential and of scopes never registered', async () => {
    expect((await t.jobToken('nadia', 'cms', t.creddToken())).status).toBe(403)
    expect(await denialsFor('nadia', 'cms')).toEqual([expect.objectContaining({ decision: 'deny', reason: expect.stringMatching(/^access_denied: no credential/) })])
    await registered('tara', 'cms')
    const res = await t.jobToken('tara', 'cms', t.creddToken(), '?scopes=compute.cancel')
    expect(res.status).toBe(400)
    expect(await denialsFor('tara', 'cms')).toEqual([expect.objectContaining({ reason: expect.stringMatching(/^invalid_scope: /), scopes: ['compute.cancel'] })])
  })

  it('records a kind-iam refusal made without asking IAM (the broker no longer has a client there), and does not revoke', async () => {
    await registered('vera', 'cms')
    const clientless = await t.withoutBrokerClient()
    const res = await clientless.request('/v1/credentials/vera/cms/token', { headers: { authorization: `Bearer ${t.creddToken()}` } })
    expect(res.status).toBe(403)
    expect(await denialsFor('vera', 'cms')).toEqual([expect.objectContaining({ role: 'job-iam', tokenKind: 'access_token', reason: expect.stringMatching(/^access_denied: IAM could not be asked/) })])
    expect(await t.store.readCredential('vera', 'cms')).toMatchObject({ revoked: false })
  })

  it('answers the refusal even when the store cannot record it, never with a token or a 500', async () => {
    await registered('uwe', 'east-storage')
    const record = t.store.record.bind(t.store)
    t.store.record = async () => { throw new Error('disk full') }
    try {
      // The grant of east-storage names only credds of site ap-east: this one (no site) is refused.
      const refused = await t.jobToken('uwe', 'east-storage', t.creddToken())
      expect(refused.status).toBe(403)
      expect(await refused.json()).toEqual({ error: 'access_denied', error_description: expect.any(String) })
    } finally {
      t.store.record = record
    }
  })
})
