import { describe, expect, it } from 'vitest'
import { useCredentialsApp } from '../support/credentials_app.ts'

/**
 * rate_limits.address on the Vault-compatible listener (docs/rate-limits.md): a request whose Vault token
 * is missing, unknown or another credential's is a refused unauthenticated request, as a subject token
 * that does not verify is at POST /token, and counts against its client address; once the address is over
 * the limit (here 2 an hour) it is answered 429 with Retry-After (RFC 9110 §10.2.3) before its token is
 * looked up. In Vault's shape, and never with "permission denied", on which HTCondor's Vault credmon would
 * delete the user's .top and .use. Refusals of a token that was found (a revoked credential) do not count:
 * an access point whose users' credentials were revoked is not a guesser.
 */
const t = await useCredentialsApp({
  configEdit: (yaml) => `${yaml}rate_limits:\n  address: { requests: 2, per: 1h }\n`,
})

async function vaultTop(user: string): Promise<{ vault_token: string; vault_url: string }> {
  const res = await t.register(await t.userToken({ preferred_username: user }), { provider: 'cms', mode: 'vault' })
  expect(res.status).toBe(201)
  return (await res.json() as { top: { vault_token: string; vault_url: string } }).top
}

/** GET <vault_url> from a client address; app.request has no socket, so the peer comes in as node's binding gives it. */
async function read(address: string, url: string, token: string | undefined) {
  const res = await t.vault.request(`${new URL(url).pathname}?minimum_seconds=2400`, { headers: token === undefined ? {} : { 'X-Vault-Token': token } },
    { incoming: { socket: { remoteAddress: address } } })
  return { status: res.status, retryAfter: res.headers.get('retry-after'), body: await res.json() as { errors?: string[] } }
}

describe('rate_limits.address on the Vault-compatible listener', () => {
  it('blocks an address whose Vault tokens were refused, before any token of it is looked up', async () => {
    const top = await vaultTop('ines')
    expect((await read('192.0.2.7', top.vault_url, 'hvs.guess-1')).status).toBe(403)
    expect((await read('192.0.2.7', top.vault_url, undefined)).status).toBe(403)
    const blocked = await read('192.0.2.7', top.vault_url, top.vault_token)
    expect(blocked.status).toBe(429)
    expect(Number(blocked.retryAfter)).toBeGreaterThanOrEqual(1)
    expect(blocked.body.errors).toHaveLength(1)
    expect(blocked.body.errors!.join(' ')).not.toContain('permission denied')
    // Another address is not held to it.
    expect((await read('192.0.2.8', top.vault_url, top.vault_token)).status).toBe(200)
  })

  it('does not count the refusals of a Vault token that was found (a revoked credential) against the address', async () => {
    const top = await vaultTop('jana')
    await t.credentials.service.revoke('jana', 'cms', 'test')
    for (let i = 0; i < 3; i++) expect((await read('192.0.2.9', top.vault_url, top.vault_token)).status).toBe(403)
    const live = await vaultTop('kora')
    expect((await read('192.0.2.9', live.vault_url, live.vault_token)).status).toBe(200)
  })

  it('counts a stale .top (its credential registered again since) once, not at every scan: the access point\'s reads go on', async () => {
    const stale = await vaultTop('lena')
    const fresh = await vaultTop('lena')
    expect(fresh.vault_token).not.toBe(stale.vault_token)
    const other = await vaultTop('mira')
    // Three scans of a credmon that still holds the replaced .top: each read is refused as Vault would
    // ("permission denied"), but one token is one refusal against the address, however often it comes.
    for (let i = 0; i < 3; i++) {
      const r = await read('192.0.2.20', stale.vault_url, stale.vault_token)
      expect(r.status).toBe(403)
      expect(r.body).toEqual({ errors: ['permission denied'] })
    }
    expect((await read('192.0.2.20', fresh.vault_url, fresh.vault_token)).status).toBe(200)
    expect((await read('192.0.2.20', other.vault_url, other.vault_token)).status).toBe(200)
  })

  it('still counts each new unknown token: a guesser trying one token after another is blocked', async () => {
    const top = await vaultTop('nora')
    expect((await read('192.0.2.21', top.vault_url, 'hvs.guess-a')).status).toBe(403)
    expect((await read('192.0.2.21', top.vault_url, 'hvs.guess-b')).status).toBe(403)
    expect((await read('192.0.2.21', top.vault_url, top.vault_token)).status).toBe(429)
  })
})
