import { describe, expect, it } from 'vitest'
import type { CredentialStore } from '../../src/credentials/credential_store.ts'
import { createVaultApp } from '../../src/http/vault_app.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { useCredentialsApp } from '../support/credentials_app.ts'

/**
 * An unknown Vault token counts against its address once (docs/rate-limits.md), so an address that sends
 * one unknown token again and again is never blocked by rate_limits.address. It must not cost a store query
 * each time either: the Vault tokens the broker hands out are random values made at registration, so one
 * the store has answered unknown stays unknown, and an unauthenticated client looping on it would otherwise
 * be an unbounded stream of store reads that the address limit no longer stops.
 */
const t = await useCredentialsApp()

describe('an unknown Vault token sent again', () => {
  it('is refused with "permission denied" each time, and looked up in the store once', async () => {
    let lookups = 0
    const store: Pick<CredentialStore, 'credentialByVaultToken'> = {
      credentialByVaultToken: async (sha256) => { lookups++; return t.store.credentialByVaultToken(sha256) },
    }
    const vault = createVaultApp({ store, jobTokens: t.credentials.jobTokens, log: silentLogger })
    for (let i = 0; i < 5; i++) {
      const res = await vault.request('/v1/secret/oauth/creds/alice/cms', { headers: { 'X-Vault-Token': 'hvs.nobody-holds-this' } })
      expect(res.status).toBe(403)
      expect(await res.json()).toEqual({ errors: ['permission denied'] })
    }
    expect(lookups).toBe(1)
  })

  it('a live token is still looked up each time (it may be revoked since)', async () => {
    const reg = await t.register(await t.userToken({ preferred_username: 'zora' }), { provider: 'cms', mode: 'vault' })
    expect(reg.status).toBe(201)
    const top = (await reg.json() as { top: { vault_token: string; vault_url: string } }).top
    let lookups = 0
    const store: Pick<CredentialStore, 'credentialByVaultToken'> = {
      credentialByVaultToken: async (sha256) => { lookups++; return t.store.credentialByVaultToken(sha256) },
    }
    const vault = createVaultApp({ store, jobTokens: t.credentials.jobTokens, log: silentLogger })
    const read = () => vault.request(`${new URL(top.vault_url).pathname}?minimum_seconds=2400`, { headers: { 'X-Vault-Token': top.vault_token } })
    expect((await read()).status).toBe(200)
    expect((await read()).status).toBe(200)
    expect(lookups).toBe(2)
  })
})
