import { describe, expect, it } from 'vitest'
import { useCredentialsApp } from '../support/credentials_app.ts'

/**
 * Every parameter of the read is single-valued (lists are space- or comma-separated within one value;
 * HTCondor's Vault credmon sends each once), and the token endpoint refuses one given twice rather than
 * keep one of its values (docs/errors.md, "a bad or repeated query parameter"). The Vault-compatible read
 * must not quietly answer a narrower question than it was asked: `scopes=a&scopes=b` is no token for `a`.
 */
const t = await useCredentialsApp()

describe('Vault-compatible read: repeated parameters', () => {
  it('refuses a parameter given twice with 400 in Vault\'s shape, before IAM is asked', async () => {
    const res = await t.register(await t.userToken({ preferred_username: 'lotta' }), { provider: 'cms', mode: 'vault' })
    expect(res.status).toBe(201)
    const top = (await res.json() as { top: { vault_token: string; vault_url: string } }).top
    const before = t.iamRequests('refresh_token').length
    for (const q of ['scopes=compute.read&scopes=compute.create', 'minimum_seconds=60&minimum_seconds=2400', 'audience=a&audiences=b&audience=c']) {
      const r = await t.vault.request(`${new URL(top.vault_url).pathname}?${q}`, { headers: { 'X-Vault-Token': top.vault_token } })
      expect(r.status).toBe(400)
      const body = await r.json() as { errors: string[] }
      expect(body.errors).toHaveLength(1)
      expect(body.errors[0]).not.toContain('permission denied')
    }
    expect(t.iamRequests('refresh_token').length).toBe(before)
  })

  it('refuses audience and audiences given together rather than answer for one of them', async () => {
    // The credmon sends one of the two (audience under /creds/, audiences elsewhere); given both, one
    // would be dropped unread, as one value of a repeated name would be.
    const res = await t.register(await t.userToken({ preferred_username: 'lukas' }), { provider: 'cms', mode: 'vault' })
    expect(res.status).toBe(201)
    const top = (await res.json() as { top: { vault_token: string; vault_url: string } }).top
    const before = t.iamRequests('refresh_token').length
    const q = new URLSearchParams({ audience: 'https://se.example.org', audiences: 'https://other.example.org' })
    const r = await t.vault.request(`${new URL(top.vault_url).pathname}?${q}`, { headers: { 'X-Vault-Token': top.vault_token } })
    expect(r.status).toBe(400)
    const body = await r.json() as { errors: string[] }
    expect(body.errors).toHaveLength(1)
    expect(body.errors[0]).not.toContain('permission denied')
    expect(t.iamRequests('refresh_token').length).toBe(before)
  })
})
