import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { decodeJwt } from 'jose'
import { afterAll, beforeEach, describe, expect, it } from 'vitest'
import { formatUse } from '../../src/clients/credmon/use_file.ts'
import { AuditStoreUnavailable } from '../../src/errors.ts'
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

/**
 * One refresh of one credential by HTCondor's Vault credmon, restated from its behaviour (not from our
 * code): read `.top`; GET vault_url with X-Vault-Token and minimum_seconds, and again with the `.top`'s
 * scopes and audience added when it has any (the narrowed answer is the one kept); on 200 write
 * `data.access_token` and a newline to a temp file in the same directory and rename it over `.use`; on
 * an `errors` list holding "permission denied" delete `.top` and `.use`; otherwise leave both alone.
 */
async function vaultCredmonRefresh(dir: string, base: string): Promise<'written' | 'deleted' | 'kept'> {
  const topPath = join(dir, `${base}.top`)
  const usePath = join(dir, `${base}.use`)
  const top = JSON.parse(readFileSync(topPath, 'utf8')) as { vault_token: string; vault_url: string; scopes?: string; audience?: string }
  const asks: Array<Record<string, string>> = [{ minimum_seconds: '2400' }]
  if (top.scopes || top.audience) asks.push({ minimum_seconds: '2400', ...(top.scopes ? { scopes: top.scopes } : {}), ...(top.audience ? { audience: top.audience } : {}) })
  let token: string | undefined
  for (const params of asks) {
    const r = await read(top, top.vault_token, params)
    if (r.status !== 200) {
      if ((r.body.errors as unknown[] | undefined)?.includes('permission denied')) {
        for (const f of [topPath, usePath]) if (existsSync(f)) unlinkSync(f)
        return 'deleted'
      }
      return 'kept'
    }
    token = (r.body as { data: { access_token: string } }).data.access_token
  }
  writeFileSync(join(dir, `.${base}.use.tmp`), `${token}\n`)
  renameSync(join(dir, `.${base}.use.tmp`), usePath)
  return 'written'
}

const credDirs: string[] = []
afterAll(() => { for (const d of credDirs) rmSync(d, { recursive: true, force: true }) })

describe('Vault-compatible read (HTCondor Vault credmon)', () => {
  it('request to .use: the Vault credmon\'s file is the narrowed token and a newline, the bytes our credmon writes with --use-format bare', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ctb-vault-credmon-'))
    credDirs.push(dir)
    const top = await vaultTop('yara', { scopes: 'compute.read', audience: SE })
    writeFileSync(join(dir, 'cms.top'), JSON.stringify(top))
    expect(await vaultCredmonRefresh(dir, 'cms')).toBe('written')
    const use = readFileSync(join(dir, 'cms.use'), 'utf8')
    expect(use.endsWith('\n')).toBe(true)
    expect(use.split('\n')).toHaveLength(2)
    const token = use.slice(0, -1)
    expect(token).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/)
    expect(decodeJwt(token)).toMatchObject({ scope: 'compute.read', aud: [SE] })
    // A pool may run either credmon: the job sees the same file.
    expect(formatUse(token, 1200, 'bare')).toBe(use)

    await t.credentials.service.revoke('yara', 'cms', 'test')
    expect(await vaultCredmonRefresh(dir, 'cms')).toBe('deleted')
    expect(existsSync(join(dir, 'cms.use'))).toBe(false)
    expect(existsSync(join(dir, 'cms.top'))).toBe(false)
  })

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

  it('a minimum_seconds no token meets does not buy the Vault token\'s holder a refresh per read', async () => {
    // docs/job-credentials.md: on this listener a token obtained within the last minute is handed out
    // again whatever minimum_seconds asks (a new one would outlive it by at most that minute). The storer
    // runs as the user and receives the Vault token, so without it the user could make the broker refresh
    // at IAM and write an audit record on every read, as fast as they can send them.
    const top = await vaultTop('tomas')
    const before = t.iamRequests('refresh_token').length
    const tokens = new Set<string>()
    for (let i = 0; i < 5; i++) {
      const r = await read(top, top.vault_token, { minimum_seconds: '9999999' })
      expect(r.status).toBe(200)
      tokens.add((r.body as { data: { access_token: string } }).data.access_token)
    }
    expect(t.iamRequests('refresh_token').length - before).toBe(1)
    expect(tokens.size).toBe(1)
    const issued = (await t.store.query({ limit: 100, type: 'token.issued' })).records.map((r) => r.event)
      .filter((e) => (e.detail as { credential?: { user?: string } } | undefined)?.credential?.user === 'tomas')
    expect(issued).toHaveLength(1)
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

  it('puts the refusal of a revoked credential\'s Vault token on record, as the token endpoint does', async () => {
    // docs/job-credentials.md, "Refusals on record": once the Vault token is authenticated, a revoked
    // credential's refusal is a token.denied record naming the credential.
    const top = await vaultTop('yves')
    await t.credentials.service.revoke('yves', 'cms', 'test')
    const r = await read(top, top.vault_token)
    expect(r.status).toBe(403)
    expect(r.body).toEqual({ errors: ['permission denied'] })
    const denied = (await t.store.query({ limit: 1, type: 'token.denied' })).records[0]!.event
    expect(denied).toMatchObject({ decision: 'deny', detail: { credential: { user: 'yves', provider: 'cms' } } })
    expect(denied.reason).toMatch(/^access_denied: .*revoked/)
  })

  it('refuses, as the credd route does, a user the policy no longer grants the provider\'s role (kind iam)', async () => {
    // docs/job-credentials.md: the provider's grant counts only in a rule that matches the user the
    // credential was registered for; a policy that stops matching the user stops their job tokens.
    const top = await vaultTop('zora')
    expect((await read(top, top.vault_token)).status).toBe(200)
    try {
      t.setPolicy((p) => p.replace('  - id: job-credentials\n    match:\n      issuer: ${IAM_ISSUER}\n      groups: [/htc/users]', '  - id: job-credentials\n    match:\n      issuer: ${IAM_ISSUER}\n      groups: [/htc/other]'))
      expect((await t.jobToken('zora', 'cms', t.creddToken())).status).toBe(403)
      const r = await read(top, top.vault_token, { minimum_seconds: '99999' })
      expect(r.status).toBe(403)
      expect(r.body).toEqual({ errors: ['permission denied'] })
      const denied = (await t.store.query({ limit: 1, type: 'token.denied' })).records[0]!.event
      expect(denied).toMatchObject({ decision: 'deny', detail: { credential: { user: 'zora', provider: 'cms' } } })
      expect(denied.reason).toMatch(/^access_denied: /)
    } finally {
      t.setPolicy()
    }
    expect((await read(top, top.vault_token)).status).toBe(200)
  })

  it('refuses ("permission denied", token.denied) a credential registered under a user name the policy now reserves', async () => {
    // docs/policies.md: a reserved account name in the identity's user part is refused; a Vault token handed out
    // before the name was reserved (the grant's reserved_names gains it) must stop reading, as a refusal, not a 500.
    // No read before the change: a token read within VAULT_REUSE_SECONDS is handed out again as it is (one
    // already out), and what is asked here is whether a fresh one is decided under the policy in force.
    const top = await vaultTop('roxy')
    try {
      t.setPolicy((p) => p.replace('- role: job-iam\n        identity: "{preferred_username}@{uid_domain}"', '- role: job-iam\n        identity: "{preferred_username}@{uid_domain}"\n        reserved_names: [roxy]'))
      const r = await read(top, top.vault_token, { minimum_seconds: '99999' })
      expect(r.status).toBe(403)
      expect(r.body).toEqual({ errors: ['permission denied'] })
      const denied = (await t.store.query({ limit: 1, type: 'token.denied' })).records[0]!.event
      expect(denied).toMatchObject({ decision: 'deny', detail: { credential: { user: 'roxy', provider: 'cms' } } })
      expect(denied.reason).toMatch(/^access_denied: .*'roxy' is a reserved account name/)
    } finally {
      t.setPolicy()
    }
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

  // RFC 9110 §15.5.6: a method the read path does not support is 405 with Allow, in Vault's shape (Vault
  // answers an operation a path lacks 405 with an `errors` list); never "permission denied", which would make
  // the credmon delete the user's files. An unknown path stays 404. Allow names GET alone: a read mints and
  // audits a token, so HEAD is refused as well (test/http/head_does_not_mint.test.ts).
  it.each(['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD'])('%s on the read path is 405, Allow: GET, an "errors" list', async (method) => {
    const top = await vaultTop(`meth${method.toLowerCase()}`)
    const u = new URL(top.vault_url)
    const res = await t.vault.request(u.pathname, { method, headers: { 'X-Vault-Token': top.vault_token } })
    expect(res.status).toBe(405)
    expect(res.headers.get('allow')).toBe('GET')
    if (method === 'HEAD') return
    const body = await res.json() as { errors: unknown }
    expect(Array.isArray(body.errors)).toBe(true)
    expect(body.errors).not.toContain('permission denied')
    expect((await t.vault.request('/v1/sys/health', { method })).status).toBe(404)
  })

  // RFC 6749 §4.1.2.1 `temporarily_unavailable` in Vault's shape: an audit store outage is a 503 with
  // Retry-After (RFC 9110 §15.6.4) and an `errors` list without "permission denied", so the unmodified
  // credmon keeps `.top` and `.use` and tries again at its next pass. No token without its record.
  it('answers an audit store outage 503 with Retry-After, no token, and the credmon keeps the credential', async () => {
    const top = await vaultTop('wren')
    const record = t.store.record.bind(t.store)
    t.store.record = async () => { throw new AuditStoreUnavailable(Object.assign(new Error('Connection terminated unexpectedly'), {})) }
    try {
      const r = await read(top, top.vault_token)
      expect(r.status).toBe(503)
      expect(r.headers.get('retry-after')).toMatch(/^[1-9]\d*$/)
      expect(Array.isArray(r.body.errors)).toBe(true)
      expect(r.body.errors).not.toContain('permission denied')
      expect(r.body).not.toHaveProperty('data')
    } finally {
      t.store.record = record
    }
    expect((await read(top, top.vault_token)).status).toBe(200)
  })
})
