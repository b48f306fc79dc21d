import { describe, expect, it } from 'vitest'
import { useCredentialsApp } from '../support/credentials_app.ts'

/**
 * Revoking the HTCondor identity a credential's tokens are for (a `sub` revocation of `<user>@UID_DOMAIN`,
 * not bound to an IAM issuer) stops that user's job tokens: a revoked identity gets nothing
 * (docs/job-credentials.md; docs/revocation: an identity revocation blocks every token naming it). For kind
 * iam the refresh refuses it; a token cached before the revocation must not be handed on either, on the
 * credd's route or the Vault-compatible read, as a cached SciToken revoked since is not.
 */
const t = await useCredentialsApp()
const uidDomain = t.config.policy.uid_domain ?? t.config.trust_domain

describe('an identity revoked after its kind-iam token was cached', () => {
  it('gets no more tokens from the cache on the credd\'s route', async () => {
    const reg = await t.register(await t.userToken({ preferred_username: 'ilse', sub: 'ilse-sub' }), { provider: 'cms' })
    expect(reg.status).toBe(201)
    expect((await t.jobToken('ilse', 'cms', t.creddToken())).status).toBe(200)
    const { id } = await t.revocations.revoke({ kind: 'sub', value: `ilse@${uidDomain}` }, { principal: 'test' })
    try {
      const again = await t.jobToken('ilse', 'cms', t.creddToken())
      expect(again.status).toBe(403)
      expect(await again.json()).toMatchObject({ error: 'access_denied' })
    } finally {
      await t.revocations.lift(id, {}, { principal: 'test' })
    }
  })

  it('gets "permission denied" on the Vault-compatible read, not the cached token', async () => {
    const reg = await t.register(await t.userToken({ preferred_username: 'jorun', sub: 'jorun-sub' }), { provider: 'cms', mode: 'vault' })
    expect(reg.status).toBe(201)
    const top = (await reg.json() as { top: { vault_token: string; vault_url: string } }).top
    const read = () => t.vault.request(`${new URL(top.vault_url).pathname}?minimum_seconds=2400`, { headers: { 'X-Vault-Token': top.vault_token } })
    expect((await read()).status).toBe(200)
    const { id } = await t.revocations.revoke({ kind: 'sub', value: `jorun@${uidDomain}` }, { principal: 'test' })
    try {
      const again = await read()
      expect(again.status).toBe(403)
      expect(await again.json()).toEqual({ errors: ['permission denied'] })
    } finally {
      await t.revocations.lift(id, {}, { principal: 'test' })
    }
  })
})
