import { beforeEach, describe, expect, it } from 'vitest'
import { useCredentialsApp } from '../support/credentials_app.ts'

/**
 * The Vault token is a bearer the user's own storer receives, so its holder must not be able to turn
 * reads into refreshes at IAM (each with its audit record) faster than one per minute per token it could
 * ask for (docs/job-credentials.md, Vault-compatible read path). A scope list is a set (RFC 6749 §3.3: the
 * order of the space-delimited values does not matter), so the same scopes in another order are the same
 * token and must not count as another one.
 */
const t = await useCredentialsApp()

beforeEach(() => { t.iam.tokenRequests = [] })

async function vaultTop(user: string): Promise<{ vault_token: string; vault_url: string }> {
  const res = await t.register(await t.userToken({ preferred_username: user }), { provider: 'cms', mode: 'vault' })
  expect(res.status).toBe(201)
  return (await res.json() as { top: { vault_token: string; vault_url: string } }).top
}

async function read(top: { vault_url: string; vault_token: string }, params: Record<string, string>) {
  const u = new URL(top.vault_url)
  const res = await t.vault.request(`${u.pathname}?${new URLSearchParams(params)}`, { headers: { 'X-Vault-Token': top.vault_token } })
  return { status: res.status, body: await res.json() as { data?: { access_token: string } } }
}

describe('Vault-compatible read: reuse within the minute', () => {
  it('the same scopes in another order are one token, not one refresh at IAM each', async () => {
    const top = await vaultTop('olga')
    const before = t.iamRequests('refresh_token').length
    // Orders of one set, as a Vault-token holder could send them in turn.
    const orders = ['compute.read compute.create', 'compute.create compute.read', 'compute.create,compute.read', 'compute.read compute.create compute.read']
    const tokens = new Set<string>()
    for (const scopes of orders) {
      const r = await read(top, { minimum_seconds: '9999999', scopes })
      expect(r.status).toBe(200)
      tokens.add(r.body.data!.access_token)
    }
    expect(t.iamRequests('refresh_token').length - before).toBe(1)
    expect(tokens.size).toBe(1)
  })
})
