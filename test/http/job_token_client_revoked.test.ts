import { describe, expect, it } from 'vitest'
import { useCredentialsApp } from '../support/credentials_app.ts'

/**
 * Revoking the IAM client a user registered a credential through (a `client` revocation of its
 * `client_id`) stops that credential's job tokens, cached or not, on the credd's route and the
 * Vault-compatible read alike (docs/job-credentials.md, reuse: "revoking the user who registered it
 * (`sub`, `client_id`): both kinds then answer 403").
 */
const t = await useCredentialsApp()

describe('a client revoked after a job token was cached', () => {
  it('gets 403 on the credd\'s route for both kinds, not the cached token', async () => {
    const token = await t.userToken({ preferred_username: 'carla', sub: 'carla-sub', client_id: 'carla-client' })
    expect((await t.register(token, { provider: 'cms' })).status).toBe(201)
    expect((await t.register(token, { provider: 'se-storage' })).status).toBe(201)
    for (const p of ['cms', 'se-storage']) expect((await t.jobToken('carla', p, t.creddToken())).status).toBe(200)
    const { id } = await t.revocations.revoke({ kind: 'client', value: 'carla-client' }, { principal: 'test' })
    try {
      for (const p of ['cms', 'se-storage']) {
        const again = await t.jobToken('carla', p, t.creddToken())
        expect(again.status).toBe(403)
        expect(await again.json()).toMatchObject({ error: 'access_denied' })
      }
    } finally {
      await t.revocations.lift(id, {}, { principal: 'test' })
    }
  })

  it('gets "permission denied" on the Vault-compatible read', async () => {
    const reg = await t.register(await t.userToken({ preferred_username: 'cosima', sub: 'cosima-sub', client_id: 'cosima-client' }), { provider: 'cms', mode: 'vault' })
    expect(reg.status).toBe(201)
    const top = (await reg.json() as { top: { vault_token: string; vault_url: string } }).top
    const read = () => t.vault.request(`${new URL(top.vault_url).pathname}?minimum_seconds=60`, { headers: { 'X-Vault-Token': top.vault_token } })
    expect((await read()).status).toBe(200)
    const { id } = await t.revocations.revoke({ kind: 'client', value: 'cosima-client' }, { principal: 'test' })
    try {
      const again = await read()
      expect(again.status).toBe(403)
      expect(await again.json()).toEqual({ errors: ['permission denied'] })
    } finally {
      await t.revocations.lift(id, {}, { principal: 'test' })
    }
  })
})
