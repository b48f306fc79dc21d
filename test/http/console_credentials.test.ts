// The console's Credentials page over HTTP without sockets: users' stored job credentials as registered
// through POST /v1/credentials against the msw IAM, the last refresh read from the audit log, revocation
// through the console (confirmation, CSRF, the admin as actor), refusal of non-admins, escaping.
import { beforeEach, describe, expect, it } from 'vitest'
import { AuditStoreUnavailable } from '../../src/errors.ts'
import { useCredentialsApp } from '../support/credentials_app.ts'
import { cookieOf, signInWithToken } from '../support/console_sign_in.ts'

const t = await useCredentialsApp({ console: true })
const ORIGIN = 'https://broker.example.org'
// What a hostile row could hold if the table were edited by hand: tags, quotes, an event handler.
const HOSTILE = `<script>alert("x")</script>"><img src=x onerror=alert(1)>' onmouseover='alert(2)`

beforeEach(() => {
  t.iam.tokenRequests = []
  t.iam.rotateRefreshTokens = false
})

const signInWith = (token: string) => signInWithToken(t.app, token, ORIGIN)

async function adminSession(): Promise<{ cookie: string; csrf: string }> {
  const res = await signInWith(t.adminToken)
  expect(res.status).toBe(200)
  const cookie = `__Host-ctb-console=${cookieOf(res, '__Host-ctb-console')}`
  const page = await (await t.app.request('/console/credentials', { headers: { cookie } })).text()
  return { cookie, csrf: /name="csrf" value="([^"]+)"/.exec(page)![1]! }
}

const postForm = (path: string, cookie: string, form: Record<string, string>, origin = ORIGIN) => t.app.request(path, {
  method: 'POST', headers: { origin, cookie, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(form),
})

async function register(user: string, provider: string): Promise<void> {
  const res = await t.register(await t.userToken({ preferred_username: user, sub: `${user}-sub` }), { provider })
  expect(res.status, await res.clone().text()).toBe(201)
}

/** The table row of one credential (user and provider cells), as HTML. */
async function rowOf(cookie: string, user: string, provider: string): Promise<string | undefined> {
  const res = await t.app.request('/console/credentials', { headers: { cookie } })
  expect(res.status).toBe(200)
  const rows = (await res.text()).split('<tr>').slice(1).map((r) => r.slice(0, r.indexOf('</tr>')))
  return rows.find((r) => r.includes(`<td class="mono nw">${user}</td><td class="mono">${provider}</td>`))
}

/** The seq of the newest token.issued record that names this credential, read from the store directly. */
async function lastJobTokenSeq(user: string, provider: string): Promise<number> {
  const page = await t.store.query({ type: 'token.issued', limit: 1000 })
  const r = page.records.find((x) => {
    const c = x.event.detail?.credential as { user?: string; provider?: string } | undefined
    return c?.user === user && c.provider === provider
  })
  expect(r, `no token.issued record names ${user}/${provider}`).toBeDefined()
  return r!.seq
}

describe('console Credentials page', () => {
  it('lists a registered credential with its scopes and audience, and no refresh before a job asked', async () => {
    await register('nora', 'cms')
    const { cookie } = await adminSession()
    const row = await rowOf(cookie, 'nora', 'cms')
    expect(row).toBeDefined()
    expect(row).toContain('<td>iam</td>')
    // Scopes and audience as the policy granted them (test/support/credentials_app.ts), offline_access not among them.
    for (const s of ['compute.read', 'compute.create', 'storage.read:/store/user', 'storage.create:/store/user', 'https://se.example.org']) expect(row).toContain(s)
    expect(row).not.toContain('offline_access')
    expect(row).toContain('nora-sub')
    expect(row).toContain('none since registration')
    expect(row).toContain('<span class="ok">active</span>')
  })

  it.each([['cms', 'iam'], ['se-storage', 'scitoken']])('shows the last job token of a %s credential (kind %s) from the audit log', async (provider) => {
    const user = provider === 'cms' ? 'olga' : 'pete'
    await register(user, provider)
    const res = await t.jobToken(user, provider, t.creddToken())
    expect(res.status).toBe(200)
    const seq = await lastJobTokenSeq(user, provider)
    const { cookie } = await adminSession()
    const row = await rowOf(cookie, user, provider)
    expect(row).toContain(`<a href="/console/records/${seq}">`)
    expect(row).not.toContain('none since registration')
  })

  it('revokes a credential after a confirmation, through the credential service, audited with the admin as actor', async () => {
    await register('quinn', 'cms')
    expect((await t.jobToken('quinn', 'cms', t.creddToken())).status).toBe(200)
    const { cookie, csrf } = await adminSession()
    const ask = await postForm('/console/credentials/revoke', cookie, { csrf, user: 'quinn', provider: 'cms' })
    expect(ask.status).toBe(200)
    expect(await ask.text()).toContain('id="confirm"')
    expect(await t.store.readCredential('quinn', 'cms')).toMatchObject({ revoked: false })

    const done = await postForm('/console/credentials/revoke', cookie, { csrf, user: 'quinn', provider: 'cms', reason: 'left the experiment', confirm: 'yes' })
    expect(done.status).toBe(200)
    expect(await done.text()).toMatch(/id="revoked-credential">quinn\/cms</)
    expect(await t.store.readCredential('quinn', 'cms')).toMatchObject({ revoked: true, revokedBy: 'admin:bootstrap' })
    const audit = (await t.store.query({ type: 'credential.revoked', limit: 10 })).records.map((r) => r.event)
    expect(audit[0]).toMatchObject({ caller: { sub: 'admin:bootstrap' }, reason: 'left the experiment', detail: { user: 'quinn', provider: 'cms' } })
    // The job-token endpoint refuses it at once, as after DELETE /v1/credentials/quinn/cms.
    expect((await t.jobToken('quinn', 'cms', t.creddToken())).status).toBe(403)
    expect(await rowOf(cookie, 'quinn', 'cms')).toContain('<span class="bad">revoked</span>')
    // Nothing left to revoke: said on the page, nothing recorded.
    const again = await postForm('/console/credentials/revoke', cookie, { csrf, user: 'quinn', provider: 'cms', confirm: 'yes' })
    expect(again.status).toBe(404)
    expect((await t.store.query({ type: 'credential.revoked', limit: 10 })).records).toHaveLength(audit.length)
  })

  it('a revocation whose page re-read fails after it committed is shown as made, not 503', async () => {
    // The credential.revoked record committed; the page's list after it met an outage. A 503 "nothing was
    // issued or changed" would be false, and its retry would be told there is nothing to revoke.
    await register('rhea', 'cms')
    const { cookie, csrf } = await adminSession()
    const write = t.store.writeCredential.bind(t.store)
    const list = t.store.listCredentials.bind(t.store)
    let failing = false
    t.store.writeCredential = async (w, e) => { const done = await write(w, e); failing = true; return done }
    t.store.listCredentials = () => failing ? Promise.reject(new AuditStoreUnavailable(new Error('database is locked'), 'read')) : list()
    try {
      const done = await postForm('/console/credentials/revoke', cookie, { csrf, user: 'rhea', provider: 'cms', confirm: 'yes' })
      expect(done.status).toBe(200)
      const page = await done.text()
      expect(page).toMatch(/id="revoked-credential">rhea\/cms</)
      expect(page).toContain('could not be read')
    } finally {
      t.store.writeCredential = write
      t.store.listCredentials = list
    }
    expect(await t.store.readCredential('rhea', 'cms')).toMatchObject({ revoked: true, revokedBy: 'admin:bootstrap' })
  })

  it('refuses a revocation without the session CSRF token, from another origin or without a session, and revokes nothing', async () => {
    await register('rita', 'cms')
    const { cookie, csrf } = await adminSession()
    const form = { user: 'rita', provider: 'cms', confirm: 'yes' }
    for (const res of [
      await postForm('/console/credentials/revoke', cookie, form),
      await postForm('/console/credentials/revoke', cookie, { ...form, csrf: 'y'.repeat(43) }),
      await postForm('/console/credentials/revoke', cookie, { ...form, csrf }, 'https://evil.example'),
      await postForm('/console/credentials/revoke', '', { ...form, csrf }),
    ]) expect(res.status).toBe(403)
    expect(await t.store.readCredential('rita', 'cms')).toMatchObject({ revoked: false })
  })

  it('refuses a non-admin: no session for a user token, the page sends visitors to sign in', async () => {
    const refused = await signInWith(await t.userToken({ preferred_username: 'sam' }))
    expect(refused.status).toBe(403)
    expect(await refused.text()).toContain('You are not an admin of this broker')
    expect(cookieOf(refused, '__Host-ctb-console')).toBeUndefined()
    const visitor = await t.app.request('/console/credentials', { redirect: 'manual' })
    expect(visitor.status).toBe(303)
    expect(visitor.headers.get('location')).toBe('/console/sign-in')
  })

  it('shows hostile provider, scope and audience strings as text', async () => {
    await t.store.writeCredential({
      action: 'register',
      credential: { user: 'tom', provider: HOSTILE, kind: 'scitoken', iss: HOSTILE, sub: HOSTILE, scopes: [HOSTILE], audience: [HOSTILE], subjectJson: '{}', createdAt: Math.floor(Date.now() / 1000) - 60, revoked: false },
    }, { type: 'credential.registered', time: Math.floor(Date.now() / 1000) - 60, decision: 'allow', detail: { user: 'tom' } })
    const { cookie, csrf } = await adminSession()
    const res = await t.app.request('/console/credentials', { headers: { cookie } })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-security-policy')).toMatch(/^default-src 'none'/)
    const body = await res.text()
    expect(body).not.toMatch(/<script|<img|' onmouseover='/)
    expect(body).toContain('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&quot;&gt;&lt;img src=x onerror=alert(1)&gt;&#39; onmouseover=&#39;alert(2)')
    // Its revoke button carries the value escaped in the attribute; the console refuses the name.
    const bad = await postForm('/console/credentials/revoke', cookie, { csrf, user: 'tom', provider: HOSTILE })
    expect(bad.status).toBe(400)
    expect(await bad.text()).toContain('user or provider is not a valid name')
  })
})
