import { DatabaseSync } from 'node:sqlite'
import { decodeJwt } from 'jose'
import { beforeEach, describe, expect, it } from 'vitest'
import { parseJobTokenResponse } from '../../src/clients/credmon/client.ts'
import { AuditStoreUnavailable } from '../../src/errors.ts'
import { useCredentialsApp, BROKER, SE } from '../support/credentials_app.ts'
import { expectRetryLaterAnswer } from '../support/retry_later_answer.ts'

/**
 * Users' job credentials over HTTP: registration against the msw IAM, the token endpoint our credmon
 * calls, refresh-token rotation, single flight, revocation. Expected wire values come from the
 * job-credential contract (docs/job-credentials.md), not from the code.
 */
const t = await useCredentialsApp()

beforeEach(() => {
  t.iam.tokenRequests = []
  t.iam.rotateRefreshTokens = true
  t.iam.refusedScopes.clear()
})

async function registered(claims: Record<string, unknown> = {}, body: Record<string, unknown> = { provider: 'cms' }) {
  const res = await t.register(await t.userToken(claims), body)
  expect(res.status).toBe(201)
  return await res.json() as { user: string; provider: string; top: Record<string, string> }
}

describe('POST /v1/credentials', () => {
  it('exchanges at IAM with offline_access and answers with a broker .top for the user the policy names', async () => {
    const res = await t.register(await t.userToken({ preferred_username: 'bob' }), { provider: 'cms' })
    expect(res.status).toBe(201)
    expect(res.headers.get('cache-control')).toBe('no-store')
    expect(await res.json()).toEqual({ user: 'bob', provider: 'cms', top: { broker_url: BROKER, user: 'bob', provider: 'cms' } })
    const sent = t.iamRequests('urn:ietf:params:oauth:grant-type:token-exchange').at(-1)!
    expect(sent.get('scope')!.split(' ').sort()).toEqual(['compute.create', 'compute.read', 'offline_access', 'storage.create:/store/user', 'storage.read:/store/user'])
    expect(sent.get('audience')).toBe(SE)
    const events = (await t.store.query({ limit: 10, type: 'credential.registered' })).records.map((r) => r.event)
    expect(events[0]).toMatchObject({ decision: 'allow', role: 'job-iam', issuedSub: 'bob@pool.example.org', detail: { user: 'bob', provider: 'cms', kind: 'iam', mode: 'broker' } })
  })

  it('stores the refresh token sealed: the table never holds it, nor does the audit log', async () => {
    await registered({ preferred_username: 'carol' })
    const [rt] = t.iam.liveRefreshTokens.slice(-1)
    expect(rt).toBeDefined()
    const db = new DatabaseSync(t.dbFile, { readOnly: true })
    try {
      const row = db.prepare("SELECT * FROM user_credentials WHERE user_name = 'carol'").get() as Record<string, unknown>
      expect(row).toMatchObject({ provider: 'cms', kind: 'iam', revoked: 0, audience: SE })
      expect(typeof row.ciphertext).toBe('string')
      expect(typeof row.nonce).toBe('string')
      expect(row.key_id).toMatch(/^[0-9a-f]{16}$/)
      const dump = JSON.stringify(db.prepare('SELECT * FROM user_credentials').all()) + JSON.stringify(db.prepare('SELECT body FROM audit_log').all())
      expect(dump).not.toContain(rt!)
      expect(dump).not.toContain(t.credentialKeyHex)
    } finally {
      db.close()
    }
  })

  it('revokes the refresh token a registration replaces at IAM, so it does not outlive its row', async () => {
    await registered({ preferred_username: 'sam' })
    const first = t.iam.liveRefreshTokens.at(-1)!
    await registered({ preferred_username: 'sam' })
    const second = t.iam.liveRefreshTokens.at(-1)!
    expect(second).not.toBe(first)
    expect(t.iam.liveRefreshTokens).not.toContain(first)
    expect((await t.jobToken('sam', 'cms', t.creddToken())).status).toBe(200)
  })

  it('writes a vault .top with a bearer for this one credential when asked for mode vault', async () => {
    const r = await registered({ preferred_username: 'dave' }, { provider: 'cms', mode: 'vault', scopes: 'compute.read', audience: SE })
    expect(r.top).toEqual({ vault_token: expect.stringMatching(/^\S{32,}$/), vault_url: 'https://broker.example.org:8200/v1/secret/oauth/creds/dave/cms', scopes: 'compute.read', audience: SE })
  })

  it('refuses a bad IAM token with invalid_token (401), an unknown provider with invalid_request, a user outside the policy with access_denied', async () => {
    const bad = await t.register('not-a-token', { provider: 'cms' })
    expect(bad.status).toBe(401)
    expect((await bad.json() as { error: string }).error).toBe('invalid_token')
    const unknown = await t.register(await t.userToken(), { provider: 'nope' })
    expect(unknown.status).toBe(400)
    expect((await unknown.json() as { error: string }).error).toBe('invalid_request')
    const outsider = await t.register(await t.userToken({ 'wlcg.groups': ['/other'] }), { provider: 'cms' })
    expect(outsider.status).toBe(403)
    expect((await outsider.json() as { error: string }).error).toBe('access_denied')
    // IAM not granting offline_access: the registration fails, and the refusal is on record.
    t.iam.refusedScopes.add('offline_access')
    const noOffline = await t.register(await t.userToken({ preferred_username: 'xena' }), { provider: 'cms' })
    expect(noOffline.status).toBe(400)
    expect(await noOffline.json()).toEqual({ error: 'invalid_scope', error_description: expect.stringMatching(/offline_access/) })
    const denied = (await t.store.query({ limit: 5, type: 'token.denied' })).records.map((r) => r.event)
    expect(denied[0]).toMatchObject({ role: 'job-iam', decision: 'deny', reason: expect.stringMatching(/^invalid_scope: .*offline_access/) })
    expect(await t.store.readCredential('xena', 'cms')).toBeUndefined()
    const user = await t.register(await t.userToken(), { provider: 'cms', user: 'root' })
    expect(user.status).toBe(400)
    expect(await user.json()).toEqual({ error: 'invalid_request', error_description: 'unknown field user' })
  })
})

describe('POST /v1/credentials with a delegated IAM token', () => {
  it('refuses a token IAM issued to another client acting for the user (act), before asking IAM, on record', async () => {
    const before = t.iamRequests('urn:ietf:params:oauth:grant-type:token-exchange').length
    const res = await t.register(await t.userToken({ preferred_username: 'dora', act: { sub: 'portal-client' } }), { provider: 'cms' })
    expect(res.status).toBe(400)
    const description = "delegation not supported: subject_token was issued to 'portal-client' acting for its subject (act claim); present the caller's own IAM token"
    expect(await res.json()).toEqual({ error: 'invalid_request', error_description: description })
    expect(t.iamRequests('urn:ietf:params:oauth:grant-type:token-exchange').length).toBe(before)
    expect(await t.store.readCredential('dora', 'cms')).toBeUndefined()
    const denied = (await t.store.query({ limit: 1, type: 'token.denied' })).records.map((r) => r.event)
    expect(denied[0]).toMatchObject({ decision: 'deny', reason: `invalid_request: ${description}` })
  })
})

describe('GET /v1/credentials/{user}/{provider}/token', () => {
  it('refuses a repeated query parameter rather than serving one of its values', async () => {
    const res = await t.jobToken('erin', 'cms', t.creddToken(), '?minimum_seconds=60&minimum_seconds=3600')
    expect(res.status).toBe(400)
    expect(await res.json()).toEqual({ error: 'invalid_request', error_description: 'parameter minimum_seconds must not be repeated' })
  })
  it('answers a credd with a refreshed IAM access token, rotating the stored refresh token', async () => {
    await registered({ preferred_username: 'erin', sub: 'erin-sub' })
    const before = t.iam.liveRefreshTokens.length
    const res = await t.jobToken('erin', 'cms', t.creddToken())
    expect(res.status).toBe(200)
    expect(res.headers.get('cache-control')).toBe('no-store')
    const body = await res.json() as { access_token: string; token_type: string; expires_in: number; scope: string }
    expect(body).toMatchObject({ token_type: 'Bearer', expires_in: expect.any(Number) })
    expect(body.expires_in).toBeGreaterThan(3500)
    expect(decodeJwt(body.access_token)).toMatchObject({ sub: 'erin-sub', aud: [SE] })
    expect(body.scope.split(' ').sort()).toEqual(['compute.create', 'compute.read', 'storage.create:/store/user', 'storage.read:/store/user'])
    expect(t.iamRequests('refresh_token')).toHaveLength(1)
    expect(t.iam.liveRefreshTokens.length).toBe(before)
    const rotated = (await t.store.query({ limit: 10, type: 'credential.rotated' })).records.map((r) => r.event)
    expect(rotated.some((e) => (e.detail as { user?: string }).user === 'erin')).toBe(true)
    // The rotated token is the one used next: IAM made the old one single-use.
    const again = await t.jobToken('erin', 'cms', t.creddToken(), '?minimum_seconds=999999')
    expect(again.status).toBe(200)
    expect(t.iamRequests('refresh_token')).toHaveLength(2)
    const issued = (await t.store.query({ limit: 10, type: 'token.issued' })).records.map((r) => r.event)
    expect(issued[0]).toMatchObject({ tokenKind: 'access_token', caller: { sub: 'credd-ap1@aps.pool.example.org' }, detail: { credential: { user: 'erin', provider: 'cms' } } })
  })

  it('reuses a still-fresh token: 1000 concurrent requests make exactly one IAM refresh', { timeout: 60_000 }, async () => {
    await registered({ preferred_username: 'frank' })
    const credd = t.creddToken()
    const answers = await Promise.all(Array.from({ length: 1000 }, () => t.jobToken('frank', 'cms', credd, '?minimum_seconds=600')))
    expect(answers.every((r) => r.status === 200)).toBe(true)
    const tokens = new Set(await Promise.all(answers.map(async (r) => (await r.json() as { access_token: string }).access_token)))
    expect(tokens.size).toBe(1)
    expect(t.iamRequests('refresh_token')).toHaveLength(1)
    // A later request the cached token still satisfies is answered from it.
    const later = await t.jobToken('frank', 'cms', credd, '?minimum_seconds=600')
    expect((await later.json() as { access_token: string }).access_token).toBe([...tokens][0])
    expect(t.iamRequests('refresh_token')).toHaveLength(1)
    // A later request with a minimum the cached token cannot meet refreshes again.
    expect((await t.jobToken('frank', 'cms', credd, '?minimum_seconds=7200')).status).toBe(200)
    expect(t.iamRequests('refresh_token')).toHaveLength(2)
  })

  it('states the life of a refreshed token from its exp when IAM leaves out expires_in, so the credmon can use it', async () => {
    await registered({ preferred_username: 'hana' })
    t.iam.omitExpiresIn = true
    try {
      const r = await t.jobToken('hana', 'cms', t.creddToken(), '?minimum_seconds=999999')
      expect(r.status).toBe(200)
      const body = await r.json() as { access_token: string; expires_in: number }
      const exp = decodeJwt(body.access_token).exp!
      expect(Math.abs(body.expires_in - (exp - Math.floor(Date.now() / 1000)))).toBeLessThanOrEqual(2)
      expect(parseJobTokenResponse(body)).toBeDefined()
    } finally {
      t.iam.omitExpiresIn = false
    }
  })

  it('never answers with a token that has no life left, even for minimum_seconds=0', async () => {
    await registered({ preferred_username: 'ines' })
    t.iam.exchangedLifetime = 2
    try {
      const first = await (await t.jobToken('ines', 'cms', t.creddToken(), '?minimum_seconds=0')).json() as { access_token: string }
      const exp = decodeJwt(first.access_token).exp!
      // Bounded: the token lives 2 s.
      for (let i = 0; i < 50 && Math.floor(Date.now() / 1000) < exp; i++) await new Promise((r) => setTimeout(r, 100))
      const r = await t.jobToken('ines', 'cms', t.creddToken(), '?minimum_seconds=0')
      expect(r.status).toBe(200)
      const body = await r.json() as { access_token: string; expires_in: number }
      expect(body.expires_in).toBeGreaterThan(0)
      expect(parseJobTokenResponse(body)).toBeDefined()
    } finally {
      t.iam.exchangedLifetime = 3600
    }
  })

  it('narrows to requested scopes and refuses scopes that were never registered', async () => {
    await registered({ preferred_username: 'gina' })
    const ok = await t.jobToken('gina', 'cms', t.creddToken(), '?scopes=compute.read')
    expect(ok.status).toBe(200)
    expect((await ok.json() as { scope: string }).scope).toBe('compute.read')
    const wider = await t.jobToken('gina', 'cms', t.creddToken(), '?scopes=compute.modify')
    expect(wider.status).toBe(400)
    expect((await wider.json() as { error: string }).error).toBe('invalid_scope')
  })

  it('hands out no token, of either kind, once the policy maps the credential to another HTCondor user', async () => {
    // docs/job-credentials.md: the HTCondor user is the part of the grant's identity before "@", and the
    // credential is stored (and its .use written) under it. A token whose identity names another user
    // would land in this user's directory carrying someone else's name: refused, 403 and token.denied,
    // whichever kind of provider, as for a grant that no longer matches.
    await registered({ preferred_username: 'quinn' }, { provider: 'cms' })
    await registered({ preferred_username: 'quinn' }, { provider: 'se-storage' })
    const credd = t.creddToken()
    const remapped = (p: string) => p
      .replace('- role: job-iam\n        identity: "{preferred_username}@{uid_domain}"', '- role: job-iam\n        identity: "batch-{preferred_username}@{uid_domain}"')
      .replace('- role: job-storage\n        identity: "{preferred_username}@{uid_domain}"', '- role: job-storage\n        identity: "batch-{preferred_username}@{uid_domain}"')
    try {
      t.setPolicy(remapped)
      for (const provider of ['cms', 'se-storage']) {
        const res = await t.jobToken('quinn', provider, credd, '?minimum_seconds=999999')
        expect(res.status, provider).toBe(403)
        expect(await res.json()).toMatchObject({ error: 'access_denied' })
        const denied = (await t.store.query({ limit: 1, type: 'token.denied' })).records[0]!.event
        expect(denied).toMatchObject({ decision: 'deny', detail: { credential: { user: 'quinn', provider } } })
      }
    } finally {
      t.setPolicy()
    }
  })

  it('refuses, with 403 and a token.denied record, a credential registered under a user name the policy now reserves', async () => {
    // docs/policies.md (Identity templates): a reserved account name in the identity's user part is refused for
    // every token kind. A credential registered before the name was reserved (here: the grant's reserved_names
    // gains it) must not get a job token by its stored user, and must fail as a policy refusal, not a 500.
    await registered({ preferred_username: 'rex' }, { provider: 'cms' })
    await registered({ preferred_username: 'rex' }, { provider: 'se-storage' })
    const credd = t.creddToken()
    const reserving = (p: string) => p
      .replace('- role: job-iam\n        identity: "{preferred_username}@{uid_domain}"', '- role: job-iam\n        identity: "{preferred_username}@{uid_domain}"\n        reserved_names: [rex]')
      .replace('- role: job-storage\n        identity: "{preferred_username}@{uid_domain}"', '- role: job-storage\n        identity: "{preferred_username}@{uid_domain}"\n        reserved_names: [rex]')
    try {
      t.setPolicy(reserving)
      for (const provider of ['cms', 'se-storage']) {
        const res = await t.jobToken('rex', provider, credd, '?minimum_seconds=999999')
        expect(res.status, provider).toBe(403)
        expect(await res.json()).toMatchObject({ error: 'access_denied', error_description: expect.stringMatching(/'rex' is a reserved account name/) })
        const denied = (await t.store.query({ limit: 1, type: 'token.denied' })).records[0]!.event
        expect(denied).toMatchObject({ decision: 'deny', detail: { credential: { user: 'rex', provider } } })
        expect(denied.reason).toMatch(/^access_denied: .*'rex' is a reserved account name/)
      }
    } finally {
      t.setPolicy()
    }
  })

  it('hands out kind-iam tokens only for what the policy in force still grants', async () => {
    // docs/job-credentials.md: the policy decides scopes, audience and user, per role, default deny; a
    // refused read is 403 ("policy no longer grants"). An IAM token is the broker's to hand on or not, and,
    // as a SciToken's mint, each refresh is decided under the policy in force.
    await registered({ preferred_username: 'nell' })
    const credd = t.creddToken()
    expect((await t.jobToken('nell', 'cms', credd)).status).toBe(200)
    try {
      t.setPolicy((p) => p.replace('scopes: [compute.read, compute.create, "storage.read:/store/user", "storage.create:/store/user"]', 'scopes: [compute.read, "storage.read:/store/user"]'))
      const all = await t.jobToken('nell', 'cms', credd, '?minimum_seconds=999999')
      expect(all.status).toBe(403)
      expect(await all.json()).toMatchObject({ error: 'access_denied' })
      const denied = (await t.store.query({ limit: 1, type: 'token.denied' })).records[0]!.event
      expect(denied).toMatchObject({ decision: 'deny', tokenKind: 'access_token', detail: { credential: { user: 'nell', provider: 'cms' } } })
      const still = await t.jobToken('nell', 'cms', credd, '?scopes=compute.read&minimum_seconds=999999')
      expect(still.status).toBe(200)
      expect((await still.json() as { scope: string }).scope).toBe('compute.read')
    } finally {
      t.setPolicy()
    }
  })

  it('decides a credd\'s job token only under grants whose fetched_by names that credd', async () => {
    // docs/policies.md: "without fetched_by no credd fetches anything under the grant", and a grant that
    // lists sites serves only credds of those sites. A second rule for the same users grants the role a
    // wider scope to ap-east credds only: a credd elsewhere, which the first rule lets fetch, must not get
    // a token that only the second rule's grant allows.
    const east = `  - id: east-extra
    match:
      issuer: \${IAM_ISSUER}
      groups: [/htc/users]
    grants:
      - role: job-iam
        identity: "{preferred_username}@{uid_domain}"
        token_kinds: [access_token]
        scopes: [compute.read, "storage.create:/store/east"]
        audiences: ["${SE}"]
        lifetime: { default: 1h, max: 6h }
        fetched_by: { roles: [credd], sites: [ap-east] }
      - role: job-storage
        identity: "{preferred_username}@{uid_domain}"
        token_kinds: [scitoken]
        scopes: ["storage.read:/store/east"]
        audiences: ["${SE}"]
        lifetime: { default: 20m, max: 1h }
        fetched_by: { roles: [credd], sites: [ap-east] }
  - id: access-point
`
    try {
      t.setPolicy((p) => p.replace('  - id: access-point\n', east))
      await registered({ preferred_username: 'pia' }, { provider: 'cms', scopes: 'compute.read storage.create:/store/east' })
      await registered({ preferred_username: 'pia' }, { provider: 'se-storage', scopes: 'storage.read:/store/east' })
      for (const provider of ['cms', 'se-storage']) {
        // The ap-east credd's token is not one the ap-west credd is handed from the cache either.
        expect((await t.jobToken('pia', provider, t.creddToken({ site: 'ap-east' }))).status).toBe(200)
        const elsewhere = await t.jobToken('pia', provider, t.creddToken({ site: 'ap-west' }))
        expect(elsewhere.status).toBe(403)
        expect((await elsewhere.json() as { error: string }).error).toBe('access_denied')
        expect((await t.jobToken('pia', provider, t.creddToken({ site: 'ap-east' }), '?minimum_seconds=999999')).status).toBe(200)
      }
    } finally {
      t.setPolicy()
    }
  })

  it('keeps serving a kind-iam credential whose IAM grant added wlcg.groups to a group scope', async () => {
    // WLCG §2.2: IAM may add wlcg.groups when wlcg.groups:/g is asked for; the exchange accepts that, and
    // the policy, which decided on what was asked, must not then refuse the credential at its refresh.
    t.iam.addGroupsScope = true
    try {
      t.setPolicy((p) => p.replace('scopes: [compute.read, compute.create, "storage.read:/store/user", "storage.create:/store/user"]', 'scopes: [compute.read, "wlcg.groups:/htc/users"]'))
      await registered({ preferred_username: 'otto' }, { provider: 'cms', scopes: 'compute.read wlcg.groups:/htc/users' })
      expect((await t.store.readCredential('otto', 'cms'))?.scopes.sort()).toEqual(['compute.read', 'wlcg.groups', 'wlcg.groups:/htc/users'])
      const res = await t.jobToken('otto', 'cms', t.creddToken(), '?minimum_seconds=999999')
      expect(res.status).toBe(200)
    } finally {
      t.iam.addGroupsScope = false
      t.setPolicy()
    }
  })

  it('never asks IAM at a refresh for a bare wlcg.groups the policy in force no longer grants', async () => {
    // docs/job-credentials.md: each refresh is decided under the policy in force, for the scopes asked of
    // IAM. A registration that asked for wlcg.groups (all the user's groups, WLCG §2.2) under a grant that
    // allowed it must not go on being refreshed with it once the grant allows only wlcg.groups:/htc/users.
    const all = 'scopes: [compute.read, compute.create, "storage.read:/store/user", "storage.create:/store/user"]'
    try {
      t.setPolicy((p) => p.replace(all, 'scopes: [compute.read, wlcg.groups, "wlcg.groups:/htc/users"]'))
      await registered({ preferred_username: 'pete' }, { provider: 'cms', scopes: 'compute.read wlcg.groups wlcg.groups:/htc/users' })
      expect((await t.store.readCredential('pete', 'cms'))?.scopes.sort()).toEqual(['compute.read', 'wlcg.groups', 'wlcg.groups:/htc/users'])
      t.setPolicy((p) => p.replace(all, 'scopes: [compute.read, "wlcg.groups:/htc/users"]'))
      const bare = await t.jobToken('pete', 'cms', t.creddToken(), '?scopes=wlcg.groups&minimum_seconds=999999')
      expect(bare.status).toBe(403)
      const before = t.iamRequests('refresh_token').length
      const res = await t.jobToken('pete', 'cms', t.creddToken(), '?minimum_seconds=999999')
      const asked = t.iamRequests('refresh_token').slice(before).map((r) => r.get('scope')!.split(' '))
      expect(asked.filter((s) => s.includes('wlcg.groups'))).toEqual([])
      expect(res.status).toBe(200)
      expect((await res.json() as { scope: string }).scope.split(' ').sort()).toEqual(['compute.read', 'wlcg.groups:/htc/users'])
    } finally {
      t.setPolicy()
    }
  })

  it('mints a storage-only SciToken for a scitoken provider, under policy', async () => {
    await registered({ preferred_username: 'hank' }, { provider: 'se-storage' })
    const res = await t.jobToken('hank', 'se-storage', t.creddToken())
    expect(res.status).toBe(200)
    const body = await res.json() as { access_token: string; scope: string }
    expect(decodeJwt(body.access_token)).toMatchObject({ iss: BROKER, sub: 'hank@pool.example.org', aud: SE, scope: 'storage.read:/store/user storage.modify:/store/user' })
    expect(t.iamRequests('refresh_token')).toHaveLength(0)
    // The record says a credd fetched it for this credential, not that hank exchanged a token himself.
    const issued = (await t.store.query({ limit: 10, type: 'token.issued' })).records.map((r) => r.event).find((e) => e.issuedSub === 'hank@pool.example.org')
    expect(issued).toMatchObject({ tokenKind: 'scitoken', detail: { credential: { user: 'hank', provider: 'se-storage' }, via: 'mint', credd: { sub: 'credd-ap1@aps.pool.example.org', role: 'credd' } } })
  })

  it('refuses callers that are not a live broker-issued IDTOKEN (401 invalid_token)', async () => {
    await registered({ preferred_username: 'ivan' })
    for (const bearer of [t.creddToken({ exp: Math.floor(Date.now() / 1000) - 10 }), t.creddToken({ trustDomain: 'other.example.org' }), await t.userToken()]) {
      const res = await t.jobToken('ivan', 'cms', bearer)
      expect(res.status).toBe(401)
      expect((await res.json() as { error: string }).error).toBe('invalid_token')
    }
    const none = await t.app.request('/v1/credentials/ivan/cms/token')
    expect(none.status).toBe(401)
    // A credd token of a revoked role generation is refused too.
    const old = t.creddToken()
    await t.revocations.revoke({ kind: 'role', value: 'credd' }, { principal: 'test' })
    const revoked = await t.jobToken('ivan', 'cms', old)
    expect(revoked.status).toBe(401)
    expect((await t.jobToken('ivan', 'cms', t.creddToken())).status).toBe(200)
  })

  it('lets only the credds the provider\'s policy grant names fetch (fetched_by): others get 403, on record', async () => {
    await registered({ preferred_username: 'vera' })
    for (const bearer of [t.creddToken({ role: 'schedd' }), t.creddToken({ role: 'credd-other' })]) {
      const res = await t.jobToken('vera', 'cms', bearer)
      expect(res.status).toBe(403)
      expect((await res.json() as { error: string }).error).toBe('access_denied')
    }
    // The same answer whether or not a credential exists: a foreign credd learns nothing.
    const unknown = await t.jobToken('nobody-here', 'cms', t.creddToken({ role: 'schedd' }))
    expect(unknown.status).toBe(403)
    const denied = (await t.store.query({ limit: 10, type: 'token.denied' })).records.map((r) => r.event).filter((e) => e.caller?.sub === 'credd-ap1@aps.pool.example.org')
    expect(denied.length).toBeGreaterThanOrEqual(3)
    expect(denied.find((e) => (e.detail as { credential?: { user?: string } }).credential?.user === 'vera')).toMatchObject({
      decision: 'deny', role: 'job-iam', tokenKind: 'access_token', reason: expect.stringMatching(/^access_denied: .*fetched_by/),
      detail: { credential: { user: 'vera', provider: 'cms' }, credd: { role: expect.stringMatching(/^(schedd|credd-other)$/) } },
    })
    expect(t.iamRequests('refresh_token')).toHaveLength(0)
    expect((await t.jobToken('vera', 'cms', t.creddToken())).status).toBe(200)
  })

  it('binds a provider to the credds of the sites its grant lists', async () => {
    await registered({ preferred_username: 'wade' }, { provider: 'east-storage' })
    for (const bearer of [t.creddToken({ site: 'ap-west' }), t.creddToken()]) {
      const res = await t.jobToken('wade', 'east-storage', bearer)
      expect(res.status).toBe(403)
      expect((await res.json() as { error: string }).error).toBe('access_denied')
    }
    const denied = (await t.store.query({ limit: 1, type: 'token.denied' })).records[0]!.event
    expect(denied).toMatchObject({ role: 'job-east-storage', tokenKind: 'scitoken', decision: 'deny', detail: { credential: { user: 'wade', provider: 'east-storage' } } })
    expect((await t.jobToken('wade', 'east-storage', t.creddToken({ site: 'ap-east' }))).status).toBe(200)
    // A site-less grant (se-storage) still serves a credd with a site.
    await registered({ preferred_username: 'wade' }, { provider: 'se-storage' })
    expect((await t.jobToken('wade', 'se-storage', t.creddToken({ site: 'ap-west' }))).status).toBe(200)
  })

  it('follows a policy reload at the next request: a credd the grant drops is refused, one it adds served', async () => {
    await registered({ preferred_username: 'xena' })
    expect((await t.jobToken('xena', 'cms', t.creddToken({ role: 'credd-hpc' }))).status).toBe(403)
    try {
      t.setPolicy((p) => p.replace('fetched_by: { roles: [credd], vault_reads: true }', 'fetched_by: { roles: [credd-hpc], vault_reads: true }'))
      expect((await t.jobToken('xena', 'cms', t.creddToken({ role: 'credd-hpc' }))).status).toBe(200)
      const old = await t.jobToken('xena', 'cms', t.creddToken())
      expect(old.status).toBe(403)
      expect((await old.json() as { error: string }).error).toBe('access_denied')
    } finally {
      t.setPolicy()
    }
    expect((await t.jobToken('xena', 'cms', t.creddToken())).status).toBe(200)
  })

  it('answers 403 access_denied for an unknown or revoked credential, and 503 with Retry-After when IAM is down', async () => {
    expect((await t.jobToken('nobody', 'cms', t.creddToken())).status).toBe(403)
    await registered({ preferred_username: 'judy' })
    const judysRefreshToken = t.iam.liveRefreshTokens.at(-1)!
    t.iam.faults.token = 'down'
    try {
      const down = await t.jobToken('judy', 'cms', t.creddToken())
      expect(down.status).toBe(503)
      expect(down.headers.get('retry-after')).toMatch(/^\d+$/)
      expect((await down.json() as { error: string }).error).toBe('temporarily_unavailable')
    } finally {
      t.iam.faults.token = 'ok'
    }
    expect((await t.jobToken('judy', 'cms', t.creddToken())).status).toBe(200)
    const rotatedRefreshToken = t.iam.liveRefreshTokens.at(-1)!
    expect(rotatedRefreshToken).not.toBe(judysRefreshToken)
    const del = await t.app.request('/v1/credentials/judy/cms', { method: 'DELETE', headers: { authorization: `Bearer ${t.adminToken}` } })
    expect(del.status).toBe(200)
    // IAM was told as well (RFC 7009): the refresh token it last issued is gone there.
    expect(t.iam.liveRefreshTokens).not.toContain(rotatedRefreshToken)
    const after = await t.jobToken('judy', 'cms', t.creddToken())
    expect(after.status).toBe(403)
    // The credential itself is gone: the answer says so (docs/job-credentials.md), for the credmon to end the .top.
    expect(await after.json()).toEqual({ error: 'access_denied', error_description: expect.any(String), credential: 'revoked' })
    const revoked = (await t.store.query({ limit: 10, type: 'credential.revoked' })).records.map((r) => r.event)
    expect(revoked[0]).toMatchObject({ detail: { user: 'judy', provider: 'cms' }, caller: { sub: 'admin:bootstrap' } })
    // Listing and revoking are admin calls (HEAD runs the listing as GET does, so it needs the same).
    expect((await t.app.request('/v1/credentials')).status).toBe(401)
    expect((await t.app.request('/v1/credentials', { method: 'HEAD' })).status).toBe(401)
    expect((await t.app.request('/v1/credentials', { headers: { authorization: `Bearer ${t.creddToken()}` } })).status).toBe(401)
    expect((await t.app.request('/v1/credentials/judy/cms', { method: 'DELETE', headers: { authorization: `Bearer ${t.creddToken()}` } })).status).toBe(401)
    const list = await t.app.request('/v1/credentials', { headers: { authorization: `Bearer ${t.adminToken}` } })
    const judy = (await list.json() as { credentials: Array<Record<string, unknown>> }).credentials.find((c) => c.user === 'judy')
    expect(judy).toMatchObject({ provider: 'cms', revoked: true })
    expect(JSON.stringify(judy)).not.toMatch(/ciphertext|nonce/)
  })

  it('survives two replicas refreshing one credential at once while IAM rotates refresh tokens', async () => {
    await registered({ preferred_username: 'rita' })
    // Another broker on the same database: its own cache, single flight and refresh lock.
    const replica = t.withCredentialKey(t.credentialKeyHex)
    const credd = t.creddToken()
    const [a, b] = await Promise.all([
      t.jobToken('rita', 'cms', credd, '?minimum_seconds=999999'),
      replica.request('/v1/credentials/rita/cms/token?minimum_seconds=999999', { headers: { authorization: `Bearer ${credd}` } }),
    ])
    // One of them spent the refresh token the other also read: that one takes up the rotated token.
    expect([a.status, b.status]).toEqual([200, 200])
    expect(await t.store.readCredential('rita', 'cms')).toMatchObject({ revoked: false })
    expect((await t.jobToken('rita', 'cms', credd, '?minimum_seconds=999999')).status).toBe(200)
  })

  it('does not answer a refresh that raced a re-registration as a refused credential (403)', async () => {
    // Contract table (docs/job-credentials.md): 403 says the credential is unknown or revoked, on which our
    // credmon removes .use and HTCondor's Vault credmon deletes .top and .use. A user re-registering at
    // submit while a credmon's refresh is at IAM has neither: the answer is 503 (keep, ask again), and the
    // next read is served from the new registration.
    await registered({ preferred_username: 'rory' })
    // IAM has answered the refresh and rotated the refresh token; its write waits until the user has
    // registered again (the row then holds the new registration's token).
    const credd = t.creddToken()
    let again: Awaited<ReturnType<typeof registered>> | undefined
    const res = await t.whileRotationWaits('rory', () => t.jobToken('rory', 'cms', credd, '?minimum_seconds=999999'), async () => {
      again = await registered({ preferred_username: 'rory' }, { provider: 'cms', scopes: 'compute.read' })
    })
    expect(res.status).toBe(503)
    expect(await res.json()).toMatchObject({ error: 'temporarily_unavailable' })
    expect(await t.store.readCredential('rory', 'cms')).toMatchObject({ revoked: false, scopes: ['compute.read'] })
    const next = await t.jobToken('rory', 'cms', credd, `?scopes=${again!.top.scopes}`)
    expect(next.status).toBe(200)
    expect((await next.json() as { scope: string }).scope).toBe('compute.read')
  })

  it('revokes the credential when IAM refuses the stored refresh token, and answers 403', async () => {
    await registered({ preferred_username: 'kate' })
    t.iam.clearRefreshTokens()
    const res = await t.jobToken('kate', 'cms', t.creddToken())
    expect(res.status).toBe(403)
    expect((await t.store.readCredential('kate', 'cms'))).toMatchObject({ revoked: true, revokedBy: 'iam' })
  })

  it('refuses a revoked user: an IAM refresh and a cached SciToken alike (403)', async () => {
    await registered({ preferred_username: 'olga', sub: 'olga-sub' })
    await registered({ preferred_username: 'olga', sub: 'olga-sub' }, { provider: 'se-storage' })
    expect((await t.jobToken('olga', 'cms', t.creddToken())).status).toBe(200)
    expect((await t.jobToken('olga', 'se-storage', t.creddToken())).status).toBe(200)
    const refreshes = t.iamRequests('refresh_token').length
    await t.revocations.revoke({ kind: 'sub', value: 'olga-sub' }, { principal: 'test' })
    // Revoking the caller stops every token issued for it: no IAM refresh, no cached token handed on.
    for (const provider of ['cms', 'se-storage']) {
      const res = await t.jobToken('olga', provider, t.creddToken(), '?minimum_seconds=0')
      expect(res.status).toBe(403)
      expect((await res.json() as { error: string }).error).toBe('access_denied')
    }
    expect(t.iamRequests('refresh_token')).toHaveLength(refreshes)
  })

  it('does not hand out a cached SciToken whose role generation was revoked', async () => {
    await registered({ preferred_username: 'pete' }, { provider: 'se-storage' })
    const first = await t.jobToken('pete', 'se-storage', t.creddToken())
    const old = (await first.json() as { access_token: string }).access_token
    await t.revocations.revoke({ kind: 'role', value: 'job-storage' }, { principal: 'test' })
    expect(t.revocations.isRevoked(decodeJwt(old))).toBe(true)
    const again = await t.jobToken('pete', 'se-storage', t.creddToken(), '?minimum_seconds=0')
    expect(again.status).toBe(200)
    const fresh = (await again.json() as { access_token: string }).access_token
    expect(fresh).not.toBe(old)
    expect(t.revocations.isRevoked(decodeJwt(fresh))).toBe(false)
  })

  it('counts the job tokens it issues in ctb_tokens_issued_total, refreshed and minted alike', async () => {
    const count = async (role: string, kind: string) => {
      const line = (await t.metrics.render()).body.split('\n').find((l) => l.startsWith('ctb_tokens_issued_total{') && l.includes(`role="${role}"`) && l.includes(`kind="${kind}"`))
      return line === undefined ? 0 : Number(line.split(' ').at(-1))
    }
    const before = [await count('job-iam', 'access_token'), await count('job-storage', 'scitoken')]
    await registered({ preferred_username: 'quinn' })
    await registered({ preferred_username: 'quinn' }, { provider: 'se-storage' })
    expect((await t.jobToken('quinn', 'cms', t.creddToken())).status).toBe(200)
    expect((await t.jobToken('quinn', 'se-storage', t.creddToken())).status).toBe(200)
    expect([await count('job-iam', 'access_token'), await count('job-storage', 'scitoken')]).toEqual([before[0]! + 1, before[1]! + 1])
  })

  // RFC 6749 §4.1.2.1 `temporarily_unavailable`, RFC 9110 §15.6.4 Retry-After: the store out of reach is an
  // outage the credmon retries, not a broken broker; still no token without its record.
  it('answers an audit store outage 503 temporarily_unavailable with Retry-After, and withholds the token', async () => {
    await registered({ preferred_username: 'lena' })
    const record = t.store.record.bind(t.store)
    t.store.record = async () => { throw new AuditStoreUnavailable(Object.assign(new Error('database is locked'), { code: 'ERR_SQLITE_ERROR', errcode: 5 })) }
    try {
      const res = await t.jobToken('lena', 'cms', t.creddToken())
      await expectRetryLaterAnswer(res, 'access_token')
    } finally {
      t.store.record = record
    }
    expect((await t.jobToken('lena', 'cms', t.creddToken())).status).toBe(200)
  })

  it('withholds the token when its audit record cannot be written (fail closed)', async () => {
    await registered({ preferred_username: 'leo' })
    const record = t.store.record.bind(t.store)
    t.store.record = async () => { throw new Error('disk full') }
    try {
      const res = await t.jobToken('leo', 'cms', t.creddToken())
      expect(res.status).toBe(500)
      expect(await res.json()).toEqual({ error: 'server_error' })
    } finally {
      t.store.record = record
    }
    // Nothing was cached from the refused attempt: the next request refreshes (and is recorded).
    const ok = await t.jobToken('leo', 'cms', t.creddToken())
    expect(ok.status).toBe(200)
  })
})

describe('the credential key', () => {
  it('a broker with another key answers 503 (keep .use, operator fixes the key), never 403 or the token', async () => {
    await registered({ preferred_username: 'mike' })
    const wrong = t.withCredentialKey('ab'.repeat(32))
    const res = await wrong.request('/v1/credentials/mike/cms/token', { headers: { authorization: `Bearer ${t.creddToken()}` } })
    expect(res.status).toBe(503)
    expect(res.headers.get('retry-after')).toBe('300')
    expect((await res.json() as { error: string }).error).toBe('temporarily_unavailable')
    expect(t.iamRequests('refresh_token')).toHaveLength(0)
    expect(await t.store.readCredential('mike', 'cms')).toMatchObject({ revoked: false })
    expect((await t.jobToken('mike', 'cms', t.creddToken())).status).toBe(200)
  })
})
