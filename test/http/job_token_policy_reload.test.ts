import { decodeJwt } from 'jose'
import { describe, expect, it } from 'vitest'
import { useCredentialsApp } from '../support/credentials_app.ts'

/**
 * A policy reload applies to job tokens at the next request, cached or not (docs/job-credentials.md, "Reuse
 * and single flight"): a token cached under the policy before the reload was decided by rules no longer in
 * force. A grant narrowed since, or an identity that no longer names the credential's HTCondor user, is
 * refused (403, token.denied) at once, not once the cached token runs short; an identity the reload maps
 * the user to instead is the one the next token carries.
 */
const t = await useCredentialsApp()
const uidDomain = t.config.policy.uid_domain ?? t.config.trust_domain

/** The job-iam grant's identity line, as the test policy has it. */
const IAM_IDENTITY = '      - role: job-iam\n        identity: "{preferred_username}@{uid_domain}"'
const STORAGE_IDENTITY = '      - role: job-storage\n        identity: "{preferred_username}@{uid_domain}"'
const IAM_SCOPES = 'scopes: [compute.read, compute.create, "storage.read:/store/user", "storage.create:/store/user"]'

/** Replaces `from` in the test policy with `to`; throws if `from` is not there to edit. */
function edit(from: string, to: string): (p: string) => string {
  return (p) => {
    if (!p.includes(from)) throw new Error(`the test policy has no ${JSON.stringify(from)} to edit`)
    return p.replace(from, to)
  }
}

async function denials(user: string): Promise<number> {
  const records = (await t.store.query({ limit: 500, type: 'token.denied' })).records.map((r) => r.event)
  return records.filter((e) => (e.detail as { credential?: { user?: string } } | undefined)?.credential?.user === user).length
}

describe('a policy reload re-decides cached job tokens', () => {
  it('kind iam, credd route: an identity that no longer names the user is refused at the next request', async () => {
    expect((await t.register(await t.userToken({ preferred_username: 'pia' }), { provider: 'cms' })).status).toBe(201)
    expect((await t.jobToken('pia', 'cms', t.creddToken())).status).toBe(200)
    t.setPolicy(edit(IAM_IDENTITY, '      - role: job-iam\n        identity: "batch-{preferred_username}@{uid_domain}"'))
    try {
      const again = await t.jobToken('pia', 'cms', t.creddToken())
      expect(again.status).toBe(403)
      expect((await again.json() as { error: string }).error).toBe('access_denied')
      expect(await denials('pia')).toBe(1)
    } finally { t.setPolicy() }
  })

  it('kind iam, credd route: a grant narrowed below the registered scopes is refused at the next request', async () => {
    expect((await t.register(await t.userToken({ preferred_username: 'quin' }), { provider: 'cms' })).status).toBe(201)
    expect((await t.jobToken('quin', 'cms', t.creddToken())).status).toBe(200)
    t.setPolicy(edit(IAM_SCOPES, 'scopes: [compute.read]'))
    try {
      const again = await t.jobToken('quin', 'cms', t.creddToken())
      expect(again.status).toBe(403)
      expect((await again.json() as { error: string }).error).toBe('access_denied')
    } finally { t.setPolicy() }
    // The grant restored: served again (the credential was never revoked).
    expect((await t.jobToken('quin', 'cms', t.creddToken())).status).toBe(200)
  })

  it('kind iam, Vault read: a narrowed grant is "permission denied" at the next read, not the cached token', async () => {
    const reg = await t.register(await t.userToken({ preferred_username: 'rhea' }), { provider: 'cms', mode: 'vault' })
    expect(reg.status).toBe(201)
    const top = (await reg.json() as { top: { vault_token: string; vault_url: string } }).top
    const read = () => t.vault.request(`${new URL(top.vault_url).pathname}?minimum_seconds=2400`, { headers: { 'X-Vault-Token': top.vault_token } })
    expect((await read()).status).toBe(200)
    t.setPolicy(edit(IAM_SCOPES, 'scopes: [compute.read]'))
    try {
      const again = await read()
      expect(again.status).toBe(403)
      expect(await again.json()).toEqual({ errors: ['permission denied'] })
    } finally { t.setPolicy() }
  })

  it('kind scitoken: the next token carries the identity the reload maps the user to', async () => {
    expect((await t.register(await t.userToken({ preferred_username: 'sven' }), { provider: 'se-storage' })).status).toBe(201)
    const first = await t.jobToken('sven', 'se-storage', t.creddToken())
    expect(first.status).toBe(200)
    expect(decodeJwt((await first.json() as { access_token: string }).access_token).sub).toBe(`sven@${uidDomain}`)
    t.setPolicy(edit(STORAGE_IDENTITY, '      - role: job-storage\n        identity: "sven@hpc.example.org"'))
    try {
      const again = await t.jobToken('sven', 'se-storage', t.creddToken())
      expect(again.status).toBe(200)
      expect(decodeJwt((await again.json() as { access_token: string }).access_token).sub).toBe('sven@hpc.example.org')
    } finally { t.setPolicy() }
  })

  it('kind scitoken: an identity that no longer names the user is refused at the next request', async () => {
    expect((await t.register(await t.userToken({ preferred_username: 'tove' }), { provider: 'se-storage' })).status).toBe(201)
    expect((await t.jobToken('tove', 'se-storage', t.creddToken())).status).toBe(200)
    t.setPolicy(edit(STORAGE_IDENTITY, '      - role: job-storage\n        identity: "batch-{preferred_username}@{uid_domain}"'))
    try {
      expect((await t.jobToken('tove', 'se-storage', t.creddToken())).status).toBe(403)
    } finally { t.setPolicy() }
  })

  it('a reload that leaves the policy as it was keeps serving the cached token (no refresh at IAM)', async () => {
    expect((await t.register(await t.userToken({ preferred_username: 'ulla' }), { provider: 'cms' })).status).toBe(201)
    expect((await t.jobToken('ulla', 'cms', t.creddToken())).status).toBe(200)
    const refreshes = t.iamRequests('refresh_token').length
    t.setPolicy()
    expect((await t.jobToken('ulla', 'cms', t.creddToken())).status).toBe(200)
    expect(t.iamRequests('refresh_token')).toHaveLength(refreshes)
  })

  it('a reload that changes only what a kind-iam token does not depend on keeps serving it (no refresh at IAM)', async () => {
    expect((await t.register(await t.userToken({ preferred_username: 'vida' }), { provider: 'cms' })).status).toBe(201)
    expect((await t.jobToken('vida', 'cms', t.creddToken())).status).toBe(200)
    const refreshes = t.iamRequests('refresh_token').length
    // The credd grant's lifetime: another digest, the same decision for vida's job tokens.
    t.setPolicy(edit('lifetime: { default: 1d, max: 7d }', 'lifetime: { default: 12h, max: 7d }'))
    try {
      expect((await t.jobToken('vida', 'cms', t.creddToken())).status).toBe(200)
      expect(t.iamRequests('refresh_token')).toHaveLength(refreshes)
    } finally { t.setPolicy() }
  })

  it('kind iam: an identity the reload maps the user to instead is refreshed for, not served from the cache', async () => {
    expect((await t.register(await t.userToken({ preferred_username: 'wanda' }), { provider: 'cms' })).status).toBe(201)
    expect((await t.jobToken('wanda', 'cms', t.creddToken())).status).toBe(200)
    const refreshes = t.iamRequests('refresh_token').length
    t.setPolicy(edit(IAM_IDENTITY, '      - role: job-iam\n        identity: "{preferred_username}@hpc.example.org"'))
    try {
      expect((await t.jobToken('wanda', 'cms', t.creddToken())).status).toBe(200)
      expect(t.iamRequests('refresh_token')).toHaveLength(refreshes + 1)
      // The token now cached is the new identity's: revoking that identity stops it.
      const { id } = await t.revocations.revoke({ kind: 'sub', value: 'wanda@hpc.example.org' }, { principal: 'test' })
      try {
        expect((await t.jobToken('wanda', 'cms', t.creddToken())).status).toBe(403)
      } finally { await t.revocations.lift(id, {}, { principal: 'test' }) }
    } finally { t.setPolicy() }
  })
})
