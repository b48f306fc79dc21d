import { describe, expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/audit_log.ts'
import { useCredentialsApp } from '../support/credentials_app.ts'

/**
 * A Vault read is a fetch by an access point's Vault credmon that the broker knows only by the Vault token,
 * so the grant's `fetched_by` decides it as it decides a credd's fetch (docs/job-credentials.md, docs/policies.md):
 * no `fetched_by`, no Vault reads; a `fetched_by` serves them only with `vault_reads: true`. Registration in
 * vault mode is refused up front (access_denied, so the storer says why); a credential registered before the
 * grant stopped allowing it is refused at each read with Vault's 403 "permission denied" (the Vault credmon's
 * only refusal, docs/job-credentials.md "Every refusal here is permission denied"), on record as token.denied.
 */
const t = await useCredentialsApp()

const JOB_IAM_FETCHED_BY = '        fetched_by: { roles: [credd], vault_reads: true }\n      - role: job-storage'

/** The test policy with job-iam's fetched_by line replaced (`line` '' drops it); throws if it is not there to edit. */
function jobIam(line: string): (p: string) => string {
  return (p) => {
    if (!p.includes(JOB_IAM_FETCHED_BY)) throw new Error('the test policy has no job-iam fetched_by line to edit')
    return p.replace(JOB_IAM_FETCHED_BY, `${line === '' ? '' : `        ${line}\n`}      - role: job-storage`)
  }
}

async function denials(user: string): Promise<AuditEvent[]> {
  const records = (await t.store.query({ limit: 500, type: 'token.denied' })).records.map((r) => r.event)
  return records.filter((e) => (e.detail as { credential?: { user?: string } } | undefined)?.credential?.user === user)
}

async function vaultRead(top: { vault_token: string; vault_url: string }) {
  const res = await t.vault.request(`${new URL(top.vault_url).pathname}?minimum_seconds=2400`, { headers: { 'X-Vault-Token': top.vault_token } })
  return { status: res.status, body: await res.json() as Record<string, unknown> }
}

describe('Vault reads follow the grant\'s fetched_by', () => {
  it('refuses vault-mode registration for a site-bound fetched_by without vault_reads, and says why; broker mode still registers', async () => {
    const token = await t.userToken({ preferred_username: 'vera' })
    const res = await t.register(token, { provider: 'east-storage', mode: 'vault' })
    expect(res.status).toBe(403)
    const body = await res.json() as { error: string; error_description: string }
    expect(body.error).toBe('access_denied')
    expect(body.error_description).toMatch(/vault_reads.*broker mode/)
    // Whole on the storer's terminal: our clients show at most 200 characters of a description (the bound
    // docs/iam.md states for what is shown of one), so the advice must fit.
    expect(body.error_description.length).toBeLessThanOrEqual(200)
    expect((await t.register(token, { provider: 'east-storage' })).status).toBe(201)
  })

  it('refuses a vault-mode registration the policy refuses in any mode for that reason, not for vault_reads', async () => {
    const res = await t.register(await t.userToken({ preferred_username: 'zoe', 'wlcg.groups': ['/other'] }), { provider: 'cms', mode: 'vault' })
    expect(res.status).toBe(403)
    const body = await res.json() as { error: string; error_description: string }
    expect(body.error).toBe('access_denied')
    expect(body.error_description).not.toMatch(/vault_reads|broker mode/)
  })

  it('refuses vault-mode registration under a grant with no fetched_by', async () => {
    t.setPolicy(jobIam(''))
    try {
      const res = await t.register(await t.userToken({ preferred_username: 'wade' }), { provider: 'cms', mode: 'vault' })
      expect(res.status).toBe(403)
      const body = await res.json() as { error: string; error_description: string }
      expect(body).toMatchObject({ error: 'access_denied', error_description: expect.stringMatching(/no fetched_by/) })
      // Broker mode would not help here: no credd may fetch under this grant either.
      expect(body.error_description).not.toMatch(/broker mode/)
      expect(body.error_description.length).toBeLessThanOrEqual(200)
    } finally { t.setPolicy() }
  })

  for (const [what, edit] of [
    ['the grant no longer has vault_reads', jobIam('fetched_by: { roles: [credd], sites: [ap-east] }')],
    ['the grant no longer has fetched_by', jobIam('')],
  ] as const) {
    it(`a credential registered in vault mode earlier is refused at each read once ${what}: 403 permission denied, on record`, async () => {
      const user = what.includes('vault_reads') ? 'xena' : 'yves'
      const res = await t.register(await t.userToken({ preferred_username: user }), { provider: 'cms', mode: 'vault' })
      expect(res.status).toBe(201)
      const top = (await res.json() as { top: { vault_token: string; vault_url: string } }).top
      expect((await vaultRead(top)).status).toBe(200)
      t.setPolicy(edit)
      try {
        const r = await vaultRead(top)
        expect(r.status).toBe(403)
        expect(r.body).toEqual({ errors: ['permission denied'] })
        const denied = await denials(user)
        expect(denied).toHaveLength(1)
        expect(denied[0]).toMatchObject({ decision: 'deny', role: 'job-iam', reason: expect.stringMatching(/^access_denied: .*Vault reads/) })
      } finally { t.setPolicy() }
      // Opted in again: the same .top reads again (the credential was never revoked).
      expect((await vaultRead(top)).status).toBe(200)
    })
  }
})
