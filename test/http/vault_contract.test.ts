import { decodeJwt } from 'jose'
import { beforeEach, describe, expect, it } from 'vitest'
import { SE, useCredentialsApp, VAULT_PUBLIC } from '../support/credentials_app.ts'

/**
 * The Vault-compatible read path, pinned to what HTCondor's unmodified Vault credmon does with it (its
 * VaultCredmon.refresh_access_token, restated in docs/job-credentials.md), not to our code:
 *  - it reads `vault_token` and `vault_url` from `.top`; `vault_url` must be https, port 8200, path /v1…;
 *  - it sends GET <vault_url> with header X-Vault-Token and the query parameter minimum_seconds, and a
 *    second request adding `scopes` and `audience` when `.top` has them;
 *  - success is HTTP 200 with `{"data": {"access_token": "..."}}`; it writes the access token + LF as `.use`;
 *  - any other status carries `{"errors": [...]}`; "permission denied" ends the user's credentials.
 */
const t = await useCredentialsApp()

beforeEach(() => { t.iam.tokenRequests = [] })

async function vaultTop(user: string, extra: Record<string, unknown> = {}): Promise<{ vault_token: string; vault_url: string; scopes?: string; audience?: string }> {
  const res = await t.register(await t.userToken({ preferred_username: user }), { provider: 'cms', mode: 'vault', ...extra })
  expect(res.status).toBe(201)
  return (await res.json() as { top: { vault_token: string; vault_url: string } }).top
}

/** GET <vault_url> on the Vault listener's app, as the credmon sends it. */
async function read(top: { vault_url: string }, token: string | undefined, params: Record<string, string> = { minimum_seconds: '2400' }) {
  const u = new URL(top.vault_url)
  const res = await t.vault.request(`${u.pathname}?${new URLSearchParams(params)}`, { headers: token === undefined ? {} : { 'X-Vault-Token': token } })
  return { status: res.status, body: await res.json() as Record<string, unknown>, headers: res.headers }
}

describe('Vault-compatible read (HTCondor Vault credmon)', () => {
  it('vault_url passes the credmon\'s checks: https, port 8200, path starting /v1', async () => {
    const top = await vaultTop('quinn')
    const u = new URL(top.vault_url)
    expect(u.protocol).toBe('https:')
    expect(u.port).toBe('8200')
    expect(u.pathname.startsWith('/v1')).toBe(true)
    expect(top.vault_url.startsWith(VAULT_PUBLIC)).toBe(true)
  })

  it('200 {"data":{"access_token":…}} for X-Vault-Token + minimum_seconds; the token is one bare JWT', async () => {
    const top = await vaultTop('rita')
    const r = await read(top, top.vault_token)
    expect(r.status).toBe(200)
    expect(Object.keys(r.body)).toContain('data')
    const token = (r.body.data as { access_token: unknown }).access_token
    expect(typeof token).toBe('string')
    expect(token).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/)
    expect(decodeJwt(token as string).aud).toEqual([SE])
  })

  it('the second, narrowed request (scopes and audience from .top) yields a token with those', async () => {
    const top = await vaultTop('sam', { scopes: 'compute.read', audience: SE })
    expect(top).toMatchObject({ scopes: 'compute.read', audience: SE })
    const r = await read(top, top.vault_token, { minimum_seconds: '2400', scopes: top.scopes!, audience: top.audience! })
    expect(r.status).toBe(200)
    expect(decodeJwt((r.body.data as { access_token: string }).access_token).scope).toBe('compute.read')
    // Paths outside /creds/ get `audiences`: accepted the same way.
    const r2 = await read(top, top.vault_token, { minimum_seconds: '2400', scopes: 'compute.read', audiences: SE })
    expect(r2.status).toBe(200)
  })

  it('a still-fresh token is reused: minimum_seconds below its remaining life costs no IAM call', async () => {
    const top = await vaultTop('tina')
    await read(top, top.vault_token)
    const before = t.iamRequests('refresh_token').length
    const again = await read(top, top.vault_token, { minimum_seconds: '60' })
    expect(again.status).toBe(200)
    expect(t.iamRequests('refresh_token').length).toBe(before)
  })

  it('"permission denied" (403, {"errors":[…]}) for a missing, unknown or other credential\'s token, and after revocation', async () => {
    const top = await vaultTop('uma')
    const other = await vaultTop('vera')
    for (const token of [undefined, 'hvs.not-a-token', other.vault_token]) {
      const r = await read(top, token)
      expect(r.status).toBe(403)
      expect(r.body).toEqual({ errors: ['permission denied'] })
    }
    expect((await read(top, top.vault_token)).status).toBe(200)
    await t.credentials.service.revoke('uma', 'cms', 'test')
    const revoked = await read(top, top.vault_token)
    expect(revoked.status).toBe(403)
    expect(revoked.body).toEqual({ errors: ['permission denied'] })
  })

  it('other failures are non-200 with an "errors" list: IAM down (503), unknown path (404)', async () => {
    const top = await vaultTop('walt')
    t.iam.faults.token = 'down'
    try {
      const r = await read(top, top.vault_token)
      expect(r.status).toBe(503)
      expect(Array.isArray(r.body.errors)).toBe(true)
      expect(r.body.errors).not.toContain('permission denied')
    } finally {
      t.iam.faults.token = 'ok'
    }
    const res = await t.vault.request('/v1/sys/health', { headers: { 'X-Vault-Token': top.vault_token } })
    expect(res.status).toBe(404)
    expect(Array.isArray((await res.json() as { errors: unknown }).errors)).toBe(true)
  })
})
