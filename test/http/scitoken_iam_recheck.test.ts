import { DatabaseSync } from 'node:sqlite'
import { http, HttpResponse } from 'msw'
import { beforeEach, describe, expect, it } from 'vitest'
import { StoreOverloaded } from '../../src/storage/group_commit.ts'
import { BROKER, SE, useCredentialsApp } from '../support/credentials_app.ts'

/**
 * IAM stays the authority on who a scitoken-kind credential's user is (docs/job-credentials.md, "IAM
 * rechecks"): registration keeps the user's IAM refresh token; a SciToken is minted only under an IAM
 * confirmation at most `credentials.iam_recheck_interval` old (default 1 h), renewed by one refresh per
 * credential; IAM refusing it revokes the credential; IAM down is tolerated for a grace (default: the
 * interval again), then 503. Time is moved, never waited for.
 */
const HOUR = 3600
const clock = { t: Math.floor(Date.now() / 1000), now() { return this.t } }
const t = await useCredentialsApp({ clock })

beforeEach(() => {
  t.iam.tokenRequests = []
  t.iam.rotateRefreshTokens = true
  t.iam.faults.token = 'ok'
})

const refreshes = () => t.iamRequests('refresh_token').length
/** Never reuse a cached token: every request is a mint. */
const FRESH = '?minimum_seconds=999999'

async function registered(user: string, groups: string[] = ['/htc/users']) {
  const sub = `${user}-sub`
  const res = await t.register(await t.userToken({ preferred_username: user, sub, 'wlcg.groups': groups }), { provider: 'se-storage' })
  expect(res.status, await res.clone().text()).toBe(201)
  return { sub, registeredAt: clock.t }
}

async function events(type: 'token.issued' | 'token.denied' | 'credential.revoked' | 'credential.rotated' | 'credential.registered', user: string) {
  const all = (await t.store.query({ limit: 500, type })).records.map((r) => r.event)
  return all.filter((e) => JSON.stringify(e.detail ?? {}).includes(`"user":"${user}"`))
}

describe('a scitoken credential and IAM', () => {
  it('obtains and seals an IAM refresh token at registration, asking IAM for offline_access and the user\'s groups', async () => {
    await registered('quinn')
    const sent = t.iamRequests('urn:ietf:params:oauth:grant-type:token-exchange').at(-1)!
    expect(sent.get('scope')!.split(' ').sort()).toEqual(['offline_access', 'wlcg.groups'])
    // The recheck token is one for the broker itself, so it passes the inbound verifier's aud check.
    expect(sent.get('audience')).toBe(BROKER)
    const rt = t.iam.liveRefreshTokens.at(-1)!
    const db = new DatabaseSync(t.dbFile, { readOnly: true })
    try {
      const row = db.prepare("SELECT * FROM user_credentials WHERE user_name = 'quinn'").get() as Record<string, unknown>
      // The credential is still the SciToken grant the policy decided; the refresh token is sealed beside it.
      expect(row).toMatchObject({ provider: 'se-storage', kind: 'scitoken', client_id: t.iam.brokerClientId, audience: SE, scopes: 'storage.read:/store/user storage.modify:/store/user' })
      expect(typeof row.ciphertext).toBe('string')
      expect(row.key_id).toMatch(/^[0-9a-f]{16}$/)
      const dump = JSON.stringify(db.prepare('SELECT * FROM user_credentials').all()) + JSON.stringify(db.prepare('SELECT body FROM audit_log').all())
      expect(dump).not.toContain(rt)
    } finally {
      db.close()
    }
    expect((await events('credential.registered', 'quinn'))[0]).toMatchObject({ detail: { kind: 'scitoken', keyId: expect.stringMatching(/^[0-9a-f]{16}$/) } })
  })

  it('asks IAM nothing within the interval; past it, one refresh for 100 concurrent job requests, the rotation on record', async () => {
    const { registeredAt } = await registered('uma')
    const before = refreshes()
    clock.t = registeredAt + HOUR - 1
    for (const scopes of ['storage.read:/store/user', 'storage.modify:/store/user']) {
      expect((await t.jobToken('uma', 'se-storage', t.creddToken(), `${FRESH}&scopes=${scopes}`)).status).toBe(200)
    }
    expect(refreshes()).toBe(before)

    clock.t = registeredAt + HOUR
    const credd = t.creddToken()
    // Four distinct cache keys, so four token flights: the IAM recheck is single-flight on its own.
    const variants = ['storage.read:/store/user', 'storage.modify:/store/user', 'storage.read:/store/user,storage.modify:/store/user', 'storage.modify:/store/user,storage.read:/store/user']
    const answers = await Promise.all(Array.from({ length: 100 }, (_, i) => t.jobToken('uma', 'se-storage', credd, `${FRESH}&scopes=${variants[i % variants.length]}`)))
    expect(answers.map((r) => r.status)).toEqual(Array(100).fill(200))
    expect(refreshes()).toBe(before + 1)
    expect(await events('credential.rotated', 'uma')).toHaveLength(1)
    const issued = await events('token.issued', 'uma')
    expect(issued.filter((e) => (e.detail as { iamCheck?: { outcome: string } }).iamCheck?.outcome === 'confirmed')).not.toHaveLength(0)
    expect(issued.at(0)).toMatchObject({ tokenKind: 'scitoken', detail: { via: 'mint', iamCheck: { confirmedAt: registeredAt + HOUR } } })

    // Confirmed again: no further IAM call until another interval has passed.
    clock.t = registeredAt + 2 * HOUR - 1
    expect((await t.jobToken('uma', 'se-storage', t.creddToken(), FRESH)).status).toBe(200)
    expect(refreshes()).toBe(before + 1)
  })

  it('revokes the credential when IAM refuses the refresh (user suspended): 403, revoked_by iam, on record', async () => {
    const { sub, registeredAt } = await registered('vera')
    t.iam.suspended.add(sub)
    try {
      clock.t = registeredAt + HOUR
      const res = await t.jobToken('vera', 'se-storage', t.creddToken(), FRESH)
      expect(res.status).toBe(403)
      expect((await res.json() as { error: string }).error).toBe('access_denied')
      expect(await t.store.readCredential('vera', 'se-storage')).toMatchObject({ revoked: true, revokedBy: 'iam' })
      expect(await events('credential.revoked', 'vera')).toEqual([expect.objectContaining({ caller: { sub: 'iam' }, detail: { user: 'vera', provider: 'se-storage' } })])
      expect((await t.jobToken('vera', 'se-storage', t.creddToken(), FRESH)).status).toBe(403)
    } finally {
      t.iam.suspended.delete(sub)
    }
  })

  it('refuses on every replica once one replica\'s recheck had IAM refuse the user, fresh confirmation and cached token notwithstanding', async () => {
    const { sub, registeredAt } = await registered('ilse')
    // Another replica: same database and credential key, its own confirmations and token cache.
    const other = t.withCredentialKey(t.credentialKeyHex)
    const ask = (app: typeof other, query = '') => app.request(`/v1/credentials/ilse/se-storage/token${query}`, { headers: { authorization: `Bearer ${t.creddToken()}` } })
    clock.t = registeredAt + HOUR + 30
    expect((await ask(other)).status).toBe(200) // the other replica confirmed at IAM
    // Within the interval of that confirmation (kept on the row): a token minted and cached, IAM not asked.
    clock.t = registeredAt + 2 * HOUR
    expect((await ask(other, FRESH)).status).toBe(200)
    t.iam.suspended.add(sub)
    try {
      clock.t = registeredAt + 2 * HOUR + 31
      // The confirmation is an interval old: this replica asks IAM, which refuses; the row is revoked.
      expect((await t.jobToken('ilse', 'se-storage', t.creddToken(), FRESH)).status).toBe(403)
      expect(await t.store.readCredential('ilse', 'se-storage')).toMatchObject({ revoked: true, revokedBy: 'iam' })
      // The other replica reads the row on each request: neither its cached token nor a fresh mint goes out.
      expect((await ask(other)).status).toBe(403)
      expect((await ask(other, FRESH)).status).toBe(403)
    } finally {
      t.iam.suspended.delete(sub)
    }
  })

  it('keeps minting while IAM is down within the grace, then answers 503 with Retry-After', async () => {
    const { registeredAt } = await registered('wynn')
    t.iam.faults.token = 'down'
    clock.t = registeredAt + HOUR + 10
    const within = await t.jobToken('wynn', 'se-storage', t.creddToken(), FRESH)
    expect(within.status).toBe(200)
    expect(t.iam.counts.token).toBeGreaterThan(0)
    expect((await events('token.issued', 'wynn')).at(0)).toMatchObject({ detail: { iamCheck: { confirmedAt: registeredAt, outcome: 'iam-unavailable' } } })

    clock.t = registeredAt + 2 * HOUR
    const beyond = await t.jobToken('wynn', 'se-storage', t.creddToken(), FRESH)
    expect(beyond.status).toBe(503)
    expect(beyond.headers.get('retry-after')).toMatch(/^[1-9]\d*$/)
    expect((await beyond.json() as { error: string }).error).toBe('temporarily_unavailable')
    // An outage is no decision about the user: the credential stays, and IAM back means tokens again.
    expect(await t.store.readCredential('wynn', 'se-storage')).toMatchObject({ revoked: false })
    t.iam.faults.token = 'ok'
    clock.t += 60
    expect((await t.jobToken('wynn', 'se-storage', t.creddToken(), FRESH)).status).toBe(200)
  })

  it('takes no Retry-After from IAM: a huge, zero or negative one neither stretches the grace nor delays the next recheck', async () => {
    for (const [i, retryAfter] of ['999999999', '0', '-30', undefined].entries()) {
      const user = `reto${'abcd'[i]}`
      const { registeredAt } = await registered(user)
      t.msw.use(http.post(t.iam.tokenEndpoint, () => HttpResponse.json({ error: 'temporarily_unavailable' }, { status: 503, ...(retryAfter !== undefined ? { headers: { 'retry-after': retryAfter } } : {}) })))
      clock.t = registeredAt + HOUR + 10
      expect((await t.jobToken(user, 'se-storage', t.creddToken(), FRESH)).status).toBe(200)
      // The last confirmation is the registration: interval + grace (2 h) after it, IAM's say-so buys nothing more.
      clock.t = registeredAt + 2 * HOUR
      const beyond = await t.jobToken(user, 'se-storage', t.creddToken(), FRESH)
      expect(beyond.status).toBe(503)
      // The broker's own back-off, at most the 5 minutes it ever asks for.
      expect(Number(beyond.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)
      expect(Number(beyond.headers.get('retry-after'))).toBeLessThanOrEqual(300)
      // IAM back: asked again within the broker's back-off, whatever IAM said.
      t.msw.resetHandlers()
      clock.t += 300
      const back = await t.jobToken(user, 'se-storage', t.creddToken(), FRESH)
      expect(back.status, retryAfter).toBe(200)
      expect((await events('token.issued', user)).at(0)).toMatchObject({ detail: { iamCheck: { confirmedAt: clock.t, outcome: 'confirmed' } } })
    }
  })

  it('refuses at the next recheck a user IAM dropped from the group the policy requires (403, token.denied)', async () => {
    const { sub, registeredAt } = await registered('xavi')
    t.iam.userGroups.set(sub, ['/cms'])
    try {
      clock.t = registeredAt + HOUR - 1
      expect((await t.jobToken('xavi', 'se-storage', t.creddToken(), FRESH)).status).toBe(200)
      clock.t = registeredAt + HOUR
      const res = await t.jobToken('xavi', 'se-storage', t.creddToken(), FRESH)
      expect(res.status).toBe(403)
      expect((await res.json() as { error: string }).error).toBe('access_denied')
      expect((await events('token.denied', 'xavi')).at(0)).toMatchObject({
        decision: 'deny', tokenKind: 'scitoken', caller: { sub, groups: ['/cms'] }, detail: { iamCheck: { outcome: 'confirmed' } },
      })
      // The credd, named as in every job-token record (issued or refused): its sub and role.
      expect((await events('token.denied', 'xavi')).at(0)?.detail?.credd).toEqual({ sub: 'credd-ap1@aps.pool.example.org', role: 'credd' })
      // IAM still vouches for the user: the credential is not revoked, only refused under this policy.
      expect(await t.store.readCredential('xavi', 'se-storage')).toMatchObject({ revoked: false })
    } finally {
      t.iam.userGroups.delete(sub)
    }
  })

  it('hands on no cached token of a credential once IAM\'s answer has made the policy refuse its user', async () => {
    const { sub, registeredAt } = await registered('abel')
    const read = '?scopes=storage.read:/store/user'
    // Cached with the grant's 20 min lifetime, well over the broker's 300 s minimum for the next hour's requests.
    clock.t = registeredAt + HOUR - 60
    expect((await t.jobToken('abel', 'se-storage', t.creddToken(), read)).status).toBe(200)
    t.iam.userGroups.set(sub, ['/cms'])
    try {
      clock.t = registeredAt + HOUR
      // Another scope set misses the cache: the recheck runs, IAM no longer puts the user in /htc/users.
      expect((await t.jobToken('abel', 'se-storage', t.creddToken(), `${FRESH}&scopes=storage.modify:/store/user`)).status).toBe(403)
      // The broker now knows IAM no longer vouches for the user's group: the read token cached 60 s ago must not go out.
      const again = await t.jobToken('abel', 'se-storage', t.creddToken(), read)
      expect(again.status).toBe(403)
      expect(await t.store.readCredential('abel', 'se-storage')).toMatchObject({ revoked: false })
    } finally {
      t.iam.userGroups.delete(sub)
    }
  })

  it('records the refusal when the broker has no client left at the user\'s IAM to recheck with, and keeps the credential', async () => {
    const { registeredAt } = await registered('cleo')
    const clientless = await t.withoutBrokerClient()
    const before = t.iam.counts.token
    clock.t = registeredAt + HOUR
    const res = await clientless.request('/v1/credentials/cleo/se-storage/token?minimum_seconds=999999', { headers: { authorization: `Bearer ${t.creddToken()}` } })
    expect(res.status).toBe(403)
    // IAM was never asked, so it refused nothing: no "IAM refused" in the answer, and nothing revoked.
    expect(t.iam.counts.token).toBe(before)
    const body = await res.json() as { error: string; error_description: string }
    expect(body.error).toBe('access_denied')
    expect(body.error_description).not.toContain('IAM refused')
    expect(await t.store.readCredential('cleo', 'se-storage')).toMatchObject({ revoked: false })
    expect(await events('credential.revoked', 'cleo')).toEqual([])
    // A refusal with no credential.revoked behind it is on record as token.denied.
    expect(await events('token.denied', 'cleo')).toEqual([expect.objectContaining({ decision: 'deny', tokenKind: 'scitoken', detail: expect.objectContaining({ credential: { user: 'cleo', provider: 'se-storage' } }) })])
  })

  it('decides scitoken credentials only on what IAM rechecks renew: a rule matching the registering token\'s scopes admits none', async () => {
    const { registeredAt } = await registered('dora')
    // The same rule, now also asking for a scope of the user's IAM token: IAM's recheck answer carries the
    // broker client's group scopes, never that one, so IAM could withdraw it unseen for the credential's life.
    t.setPolicy((p) => p.replace('      groups: [/htc/users]\n', '      groups: [/htc/users]\n      scopes: [compute.create]\n'))
    try {
      const token = await t.userToken({ preferred_username: 'emil', sub: 'emil-sub' })
      const res = await t.register(token, { provider: 'se-storage' })
      expect(res.status).toBe(403)
      expect((await res.json() as { error: string }).error).toBe('access_denied')
      // Kind iam still decides on the user's token: each of its job tokens is IAM's own answer anyway.
      expect((await t.register(token, { provider: 'cms' })).status).toBe(201)
      // A credential registered before the rule changed is refused at its next mint, recheck due or not.
      clock.t = registeredAt + 60
      expect((await t.jobToken('dora', 'se-storage', t.creddToken(), FRESH)).status).toBe(403)
    } finally {
      t.setPolicy()
    }
  })

  it('refuses a credential registered before IAM rechecks (no refresh token) with a message to register again', async () => {
    const now = clock.t
    const credential = {
      user: 'yuri', provider: 'se-storage', kind: 'scitoken' as const, iss: t.iam.issuer, sub: 'yuri-sub', scopes: ['storage.read:/store/user'], audience: [SE],
      subjectJson: JSON.stringify({ iss: t.iam.issuer, sub: 'yuri-sub', groups: ['/htc/users'], scopes: [], exp: now + HOUR, preferred_username: 'yuri', claims: { preferred_username: 'yuri' } }),
      createdAt: now, revoked: false,
    }
    await t.store.writeCredential({ action: 'register', credential }, { type: 'credential.registered', time: now, decision: 'allow', detail: { user: 'yuri', provider: 'se-storage', kind: 'scitoken' } })
    const res = await t.jobToken('yuri', 'se-storage', t.creddToken(), FRESH)
    expect(res.status).toBe(403)
    expect(await res.json()).toEqual({ error: 'access_denied', error_description: expect.stringContaining('register again'), credential: 'outdated' })
  })

  it('revokes the refresh token at IAM when the credential is revoked by an admin', async () => {
    await registered('zoe')
    const rt = t.iam.liveRefreshTokens.at(-1)
    expect(rt).toBeDefined()
    const revocations = t.iam.counts.revocation
    const del = await t.app.request('/v1/credentials/zoe/se-storage', { method: 'DELETE', headers: { authorization: `Bearer ${t.adminToken}` } })
    expect(del.status).toBe(200)
    expect(t.iam.counts.revocation).toBe(revocations + 1)
    expect(t.iam.liveRefreshTokens).not.toContain(rt)
  })

  it('keeps the refresh token a recheck rotated when the store could not take it: the next recheck uses it', async () => {
    await registered('ines')
    const write = t.store.writeCredential.bind(t.store)
    let refused = 0
    // The store refuses the first rotation write (a full queue), at its own boundary.
    t.store.writeCredential = async (w, e) => {
      if (w.action === 'rotate' && refused++ === 0) throw new StoreOverloaded(50_000)
      return write(w, e)
    }
    try {
      clock.t += HOUR + 1
      const first = await t.jobToken('ines', 'se-storage', t.creddToken(), FRESH)
      clock.t += HOUR + 1
      const second = await t.jobToken('ines', 'se-storage', t.creddToken(), FRESH)
      expect([first.status, second.status]).toEqual([200, 200])
    } finally {
      t.store.writeCredential = write
    }
    expect(refreshes()).toBe(2)
    expect(await t.store.readCredential('ines', 'se-storage')).toMatchObject({ revoked: false })
  })
})

describe('IAM confirmations kept on the credential, for every replica and the next start', () => {
  const mint = (app: { request: (path: string, init: RequestInit) => Response | Promise<Response> }, user: string) =>
    app.request(`/v1/credentials/${user}/se-storage/token${FRESH}`, { headers: { authorization: `Bearer ${t.creddToken()}` } })

  it('lets a restarted broker mint under the last confirmation when IAM is down just after the restart', async () => {
    const { registeredAt } = await registered('cleo')
    clock.t = registeredAt + HOUR
    expect((await t.jobToken('cleo', 'se-storage', t.creddToken(), FRESH)).status).toBe(200)
    expect((await t.store.readCredential('cleo', 'se-storage'))!.confirmation).toMatchObject({ at: registeredAt + HOUR, groups: ['/htc/users'] })
    t.iam.faults.token = 'down'
    const restarted = t.restartCredentials()
    try {
      // Past interval + grace from the registration, within them from the last confirmation.
      clock.t = registeredAt + 2 * HOUR + 1800
      expect((await mint(restarted.app, 'cleo')).status).toBe(200)
      expect((await events('token.issued', 'cleo')).at(0)).toMatchObject({ detail: { iamCheck: { confirmedAt: registeredAt + HOUR, outcome: 'iam-unavailable' } } })
      // And no longer once that confirmation is past them too.
      clock.t = registeredAt + 3 * HOUR
      expect((await mint(restarted.app, 'cleo')).status).toBe(503)
    } finally {
      t.iam.faults.token = 'ok'
      await restarted.credentials.close()
    }
  })

  it('lets another replica decide on a confirmation it did not obtain, groups included, asking IAM nothing', async () => {
    const { sub, registeredAt } = await registered('dina')
    // IAM has dropped the user from the group the policy requires.
    t.iam.userGroups.set(sub, ['/cms'])
    const replica = t.restartCredentials()
    try {
      clock.t = registeredAt + HOUR
      expect((await t.jobToken('dina', 'se-storage', t.creddToken(), FRESH)).status).toBe(403)
      const before = refreshes()
      clock.t = registeredAt + HOUR + 600
      expect((await mint(replica.app, 'dina')).status).toBe(403)
      expect(refreshes()).toBe(before)
      expect((await events('token.denied', 'dina')).at(0)).toMatchObject({ caller: { groups: ['/cms'] }, detail: { iamCheck: { confirmedAt: registeredAt + HOUR, outcome: 'not-due' } } })
    } finally {
      t.iam.userGroups.delete(sub)
      await replica.credentials.close()
    }
  })
})
