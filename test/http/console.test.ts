// The console's HTTP edge without sockets: sign-in (bootstrap token and the IAM callback), refusal of
// non-admins as the admin API refuses them, cookies, CSRF, the Content-Security-Policy, and escaping of
// caller-chosen audit strings.
import { createHash } from 'node:crypto'
import { beforeEach, describe, expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/audit_log.ts'
import { createApp } from '../../src/app.ts'
import type { ConsoleSignIn } from '../../src/console/oidc_sign_in.ts'
import { bootstrapTokenAuthenticator, type AdminAuthenticator } from '../../src/http/middleware/admin_auth.ts'
import { fixedClock } from '../../src/lib/clock.ts'
import { AuditStoreUnavailable, TemporarilyUnavailable } from '../../src/errors.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { RevocationService } from '../../src/revocation/revocation_service.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'
import { testDeps } from '../support/broker_deps.ts'
import { cookieOf, signInWithToken } from '../support/console_sign_in.ts'
import { loadPolicies } from '../../src/policy/load.ts'

const ORIGIN = 'https://broker.example.org'
const BOOT = 'b'.repeat(43)
const IAM = 'https://iam.example.org/'
const NOW = Math.floor(Date.now() / 1000)
// Written from the browser's point of view: what an attacker would put in a sub, a reason or a request id.
const HOSTILE = `<script>alert("x")</script>"><img src=x onerror=alert(1)>' onmouseover='alert(2)`

/** IAM-like admins: bearer "iam:NAME"; alice holds the admin grant, bob does not. */
const iamLike: AdminAuthenticator = {
  authenticate: async (t) => t === 'iam:alice' ? { id: `${IAM},alice`, via: 'iam:broker-admins', claims: { iss: IAM, sub: 'alice', iat: NOW - 5 } } : null,
}

/** IAM's side of the code flow: the code names the user whose access token comes back. */
const signIn: ConsoleSignIn = {
  async start() { return { url: 'https://iam.example.org/authorize?client_id=broker', codeVerifier: 'v'.repeat(43), nonce: 'n', state: 'state-1' } },
  async finish(params, checks) {
    if (checks.codeVerifier !== 'v'.repeat(43)) throw new Error('verifier not carried')
    return { accessToken: `iam:${params.get('code')}`, expiresAt: NOW + 3600 }
  },
}

let store: MemoryStore
let revocations: RevocationService
let app: ReturnType<typeof createApp>

beforeEach(() => {
  store = new MemoryStore()
  revocations = new RevocationService({
    store, clock: fixedClock(NOW), log: silentLogger, maxTokenLifetime: 86400, refreshSeconds: 60,
    knownLabels: () => ({ roles: new Set(['pilot']), sites: new Set(['hpc-b']) }),
    knownIssuers: () => new Set([IAM]),
  })
  app = createApp(testDeps({
    admin: {
      audit: store, revocations, authenticators: [bootstrapTokenAuthenticator(createHash('sha256').update(BOOT).digest()), iamLike],
      policy: { current: loadPolicies('policies', { trustDomain: 'pool.example.org', uidDomain: 'users.example.org', vars: { IAM_ISSUER: IAM }, scitokenProfile: 'wlcg', maxLifetime: {} }) },
    },
    console: { signIn, keys: () => ({ scitoken: [], condor: [] }), sessionSeconds: 3600, sessions: store },
  }))
})

async function bootstrapSession(): Promise<{ cookie: string; csrf: string }> {
  const res = await signInWithToken(app, BOOT, ORIGIN)
  expect(res.status).toBe(200)
  const cookie = `__Host-ctb-console=${cookieOf(res, '__Host-ctb-console')}`
  const overview = await (await app.request('/console', { headers: { cookie } })).text()
  return { cookie, csrf: /name="csrf" value="([^"]+)"/.exec(overview)![1]! }
}

const postForm = (path: string, cookie: string, form: Record<string, string>, origin = ORIGIN) => app.request(path, {
  method: 'POST', headers: { origin, cookie, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(form),
})

describe('console sign-in', () => {
  it('sends a visitor without a session to the sign-in page', async () => {
    const res = await app.request('/console', { redirect: 'manual' })
    expect(res.status).toBe(303)
    expect(res.headers.get('location')).toBe('/console/sign-in')
  })

  it('signs in with the bootstrap token: session cookie HttpOnly, Secure, SameSite=Strict', async () => {
    const page = await app.request('/console/sign-in')
    const pre = cookieOf(page, '__Host-ctb-console-pre')!
    const preCsrf = /name="csrf" value="([^"]+)"/.exec(await page.text())![1]!
    const res = await app.request('/console/sign-in/token', {
      method: 'POST', headers: { origin: ORIGIN, cookie: `__Host-ctb-console-pre=${pre}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ csrf: preCsrf, token: BOOT }),
    })
    expect(res.status).toBe(200)
    const line = res.headers.getSetCookie().find((l) => l.startsWith('__Host-ctb-console='))!
    expect(line).toMatch(/; HttpOnly/)
    expect(line).toMatch(/; Secure/)
    expect(line).toMatch(/; SameSite=Strict/)
    expect(line).toMatch(/; Path=\//)
    expect(await res.text()).toContain('http-equiv="refresh" content="0;url=/console"')
  })

  it('refuses the bootstrap form without its CSRF token or from another origin', async () => {
    const page = await app.request('/console/sign-in')
    const pre = cookieOf(page, '__Host-ctb-console-pre')!
    const csrf = /name="csrf" value="([^"]+)"/.exec(await page.text())![1]!
    const attempt = (form: Record<string, string>, origin: string) => app.request('/console/sign-in/token', {
      method: 'POST', headers: { origin, cookie: `__Host-ctb-console-pre=${pre}`, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(form),
    })
    for (const res of [await attempt({ token: BOOT }, ORIGIN), await attempt({ token: BOOT, csrf: 'x'.repeat(43) }, ORIGIN), await attempt({ token: BOOT, csrf }, 'https://evil.example')]) {
      expect(res.status).toBe(403)
      expect(cookieOf(res, '__Host-ctb-console')).toBeUndefined()
    }
  })

  it('signs an IAM admin in through the callback, bound to the state cookie', async () => {
    const start = await app.request('/console/login', { redirect: 'manual' })
    expect(start.status).toBe(303)
    expect(start.headers.get('location')).toBe('https://iam.example.org/authorize?client_id=broker')
    const login = start.headers.getSetCookie().find((l) => l.startsWith('__Host-ctb-console-login='))!
    // Lax: IAM's redirect back is a cross-site navigation, which Strict cookies would miss.
    expect(login).toMatch(/SameSite=Lax/)
    expect(login).toMatch(/HttpOnly/)
    // A callback without the browser's state cookie is refused (login CSRF).
    expect((await app.request('/console/callback?code=alice&state=state-1')).status).toBe(400)
    const again = await app.request('/console/login', { redirect: 'manual' })
    const res = await app.request('/console/callback?code=alice&state=state-1', { headers: { cookie: `__Host-ctb-console-login=${cookieOf(again, '__Host-ctb-console-login')}` } })
    expect(res.status).toBe(200)
    const cookie = `__Host-ctb-console=${cookieOf(res, '__Host-ctb-console')}`
    const overview = await app.request('/console', { headers: { cookie } })
    expect(overview.status).toBe(200)
    expect(await overview.text()).toContain(`${IAM},alice`)
  })

  it('ends the session the browser held when it signs in again, so no earlier cookie stays valid', async () => {
    // docs/console.md, Sessions: a sign-in starts a new session under a fresh id. The one the browser
    // presented (another admin's at a shared desk, or a cookie copied earlier) is ended, not left to
    // live out its eight hours beside the new one.
    const first = await bootstrapSession()
    const login = await app.request('/console/login', { redirect: 'manual' })
    const res = await app.request('/console/callback?code=alice&state=state-1', {
      headers: { cookie: `${first.cookie}; __Host-ctb-console-login=${cookieOf(login, '__Host-ctb-console-login')}` },
    })
    expect(res.status).toBe(200)
    const second = `__Host-ctb-console=${cookieOf(res, '__Host-ctb-console')}`
    expect(second).not.toBe(first.cookie)
    expect((await app.request('/console', { headers: { cookie: second } })).status).toBe(200)
    const old = await app.request('/console', { headers: { cookie: first.cookie }, redirect: 'manual' })
    expect(old.status).toBe(303)
    expect(old.headers.get('location')).toBe('/console/sign-in')
  })

  it('refuses a non-admin exactly as the admin API does', async () => {
    expect((await app.request('/v1/audit', { headers: { authorization: 'Bearer iam:bob' } })).status).toBe(401)
    const start = await app.request('/console/login', { redirect: 'manual' })
    const res = await app.request('/console/callback?code=bob&state=state-1', { headers: { cookie: `__Host-ctb-console-login=${cookieOf(start, '__Host-ctb-console-login')}` } })
    expect(res.status).toBe(403)
    expect(await res.text()).toContain('You are not an admin of this broker')
    expect(cookieOf(res, '__Host-ctb-console')).toBeUndefined()
  })

  it('ends the session of an admin revoked after signing in', async () => {
    const start = await app.request('/console/login', { redirect: 'manual' })
    const res = await app.request('/console/callback?code=alice&state=state-1', { headers: { cookie: `__Host-ctb-console-login=${cookieOf(start, '__Host-ctb-console-login')}` } })
    const cookie = `__Host-ctb-console=${cookieOf(res, '__Host-ctb-console')}`
    expect((await app.request('/console', { headers: { cookie } })).status).toBe(200)
    await revocations.revoke({ kind: 'sub', value: 'alice', iss: IAM }, { principal: 'test' })
    const after = await app.request('/console', { headers: { cookie } })
    expect(after.status).toBe(403)
    expect((await app.request('/v1/audit', { headers: { authorization: 'Bearer iam:alice' } })).status).toBe(401)
  })
})

describe('console sign-in under a flood of sign-ins started elsewhere', () => {
  it('still completes a sign-in in progress after a thousand others were started', async () => {
    let n = 0
    const counting: ConsoleSignIn = {
      async start() { n++; return { url: `https://iam.example.org/authorize?n=${n}`, codeVerifier: 'v'.repeat(43), nonce: `n${n}`, state: `state-${n}` } },
      finish: signIn.finish,
    }
    const a = createApp(testDeps({
      admin: { audit: store, revocations, authenticators: [iamLike] },
      console: { signIn: counting, keys: () => ({ scitoken: [], condor: [] }), sessionSeconds: 3600, sessions: store },
    }))
    const mine = await a.request('/console/login', { redirect: 'manual' })
    const state = new URL(mine.headers.get('location')!).searchParams.get('n')!
    // Anyone may start sign-ins: they must not push out the one this browser is in the middle of.
    for (let i = 0; i < 1001; i++) await a.request('/console/login', { redirect: 'manual' })
    const res = await a.request(`/console/callback?code=alice&state=state-${state}`, { headers: { cookie: `__Host-ctb-console-login=${cookieOf(mine, '__Host-ctb-console-login')}` } })
    expect(res.status).toBe(200)
    expect(cookieOf(res, '__Host-ctb-console')).toBeDefined()
  })
})

describe('console sign-in while IAM is down', () => {
  it('answers the IAM sign-in with a 503 page, not the API JSON', async () => {
    const down: ConsoleSignIn = { start: async () => { throw new TemporarilyUnavailable('IAM discovery failed recently; try again later') }, finish: signIn.finish }
    const a = createApp(testDeps({
      admin: { audit: store, revocations, authenticators: [] },
      console: { signIn: down, keys: () => ({ scitoken: [], condor: [] }), sessionSeconds: 3600, sessions: store },
    }))
    const res = await a.request('/console/login')
    expect(res.status).toBe(503)
    expect(res.headers.get('content-type')).toMatch(/^text\/html/)
    expect(await res.text()).toContain('IAM discovery failed recently')
  })
})

describe('console 503 pages carry Retry-After, as the API 503 for the same cause does', () => {
  it('IAM down: the signed-in pages, the token sign-in and the IAM sign-in wait as long as the admin API', async () => {
    // An odd wait, so that a fixed value in the page would not pass by chance.
    const WAIT = 7
    let iamDown = false
    const unavailable = () => new TemporarilyUnavailable('IAM could not be reached or answered badly (userinfo); try again later', { retryAfter: WAIT })
    const flaky: AdminAuthenticator = {
      authenticate: async (t) => {
        if (iamDown) throw unavailable()
        return iamLike.authenticate(t)
      },
    }
    const flakySignIn: ConsoleSignIn = { start: async () => { if (iamDown) throw unavailable(); return signIn.start() }, finish: signIn.finish }
    const a = createApp(testDeps({
      admin: { audit: store, revocations, authenticators: [flaky] },
      console: { signIn: flakySignIn, keys: () => ({ scitoken: [], condor: [] }), sessionSeconds: 3600, sessions: store },
    }))
    const start = await a.request('/console/login', { redirect: 'manual' })
    const signedIn = await a.request('/console/callback?code=alice&state=state-1', { headers: { cookie: `__Host-ctb-console-login=${cookieOf(start, '__Host-ctb-console-login')}` } })
    const cookie = `__Host-ctb-console=${cookieOf(signedIn, '__Host-ctb-console')}`
    iamDown = true

    const api = await a.request('/v1/audit', { headers: { authorization: 'Bearer iam:alice' } })
    expect(api.status).toBe(503)
    expect(api.headers.get('retry-after')).toBe(String(WAIT))
    const pages = {
      'a signed-in page': await a.request('/console', { headers: { cookie } }),
      'the token sign-in': await signInWithToken(a, 'iam:alice', ORIGIN),
      'the IAM sign-in': await a.request('/console/login'),
    }
    for (const [what, res] of Object.entries(pages)) {
      expect(res.status, what).toBe(503)
      expect(res.headers.get('content-type'), what).toMatch(/^text\/html/)
      expect(res.headers.get('retry-after'), what).toBe(api.headers.get('retry-after'))
    }
  })
})

describe('console sign-out while IAM is down', () => {
  it('ends the session at once, though the bearer cannot be re-checked, and still wants the CSRF token', async () => {
    let iamDown = false
    const flaky: AdminAuthenticator = {
      authenticate: async (t) => {
        if (iamDown) throw new TemporarilyUnavailable('IAM could not be reached or answered badly (userinfo); try again later')
        return iamLike.authenticate(t)
      },
    }
    const a = createApp(testDeps({
      admin: { audit: store, revocations, authenticators: [flaky] },
      console: { signIn, keys: () => ({ scitoken: [], condor: [] }), sessionSeconds: 3600, sessions: store },
    }))
    const start = await a.request('/console/login', { redirect: 'manual' })
    const signedIn = await a.request('/console/callback?code=alice&state=state-1', { headers: { cookie: `__Host-ctb-console-login=${cookieOf(start, '__Host-ctb-console-login')}` } })
    const cookie = `__Host-ctb-console=${cookieOf(signedIn, '__Host-ctb-console')}`
    const csrf = /name="csrf" value="([^"]+)"/.exec(await (await a.request('/console', { headers: { cookie } })).text())![1]!
    const signOut = (form: Record<string, string>) => a.request('/console/sign-out', {
      method: 'POST', headers: { origin: ORIGIN, cookie, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(form),
    })
    iamDown = true
    expect((await signOut({ csrf: 'forged' })).status).toBe(403)
    const out = await signOut({ csrf })
    expect(out.status).toBe(303)
    expect(out.headers.get('location')).toBe('/console/sign-in?signed-out')
    // IAM answers again: the session signed out of stays ended.
    iamDown = false
    const after = await a.request('/console', { headers: { cookie }, redirect: 'manual' })
    expect(after.status).toBe(303)
    expect(after.headers.get('location')).toBe('/console/sign-in')
  })
})

describe('console while the session store is down', () => {
  it('answers server_error JSON with no detail of the failure, and the log keeps it', async () => {
    const { cookie } = await bootstrapSession()
    const lines: string[] = []
    const log = { ...silentLogger, error: (msg: string, fields?: Record<string, unknown>) => { lines.push(`${msg} ${String((fields?.err as Error | undefined)?.message)}`) } }
    const failure = 'connect ECONNREFUSED 10.9.8.7:5432 (postgres://broker:hunter2@db/broker)'
    store.readConsoleSession = async () => { throw new Error(failure) }
    const a = createApp(testDeps({
      log,
      admin: { audit: store, revocations, authenticators: [bootstrapTokenAuthenticator(createHash('sha256').update(BOOT).digest())] },
      console: { keys: () => ({ scitoken: [], condor: [] }), sessionSeconds: 3600, sessions: store },
    }))
    const signOut = () => a.request('/console/sign-out', {
      method: 'POST', headers: { origin: ORIGIN, cookie, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ csrf: 'x' }),
    })
    for (const res of [await a.request('/console', { headers: { cookie } }), await signOut()]) {
      expect(res.status).toBe(500)
      expect(await res.json()).toEqual({ error: 'server_error' })
    }
    expect(lines.every((l) => l.includes(failure))).toBe(true)
    expect(lines.length).toBe(2)
  })
})

describe('console security headers', () => {
  it.each(['/console/sign-in', '/console'])('%s has a CSP that forbids every script and inline style', async (path) => {
    const { cookie } = await bootstrapSession()
    const res = await app.request(path, { headers: { cookie } })
    expect(res.status).toBe(200)
    const csp = res.headers.get('content-security-policy')!
    expect(csp.split(';').map((d) => d.trim())).toEqual(expect.arrayContaining(["default-src 'none'", "style-src 'self'", "form-action 'self'", "frame-ancestors 'none'"]))
    expect(csp).not.toMatch(/unsafe-inline|unsafe-eval|script-src/)
    expect(res.headers.get('cache-control')).toBe('no-store')
    expect(res.headers.get('x-content-type-options')).toBe('nosniff')
    expect(res.headers.get('referrer-policy')).toBe('same-origin')
    const body = await res.text()
    expect(body).not.toMatch(/<script|\sstyle=|\son[a-z]+=/i)
  })
})

describe('console CSRF', () => {
  it('refuses a revocation without the session CSRF token or from another origin, and stores nothing', async () => {
    const { cookie, csrf } = await bootstrapSession()
    const form = { kind: 'role', value: 'pilot', confirm: 'yes' }
    expect((await postForm('/console/act/revoke', cookie, form)).status).toBe(403)
    expect((await postForm('/console/act/revoke', cookie, { ...form, csrf: 'y'.repeat(43) })).status).toBe(403)
    expect((await postForm('/console/act/revoke', cookie, { ...form, csrf }, 'https://evil.example')).status).toBe(403)
    expect((await postForm('/console/act/revoke', '', { ...form, csrf })).status).toBe(403)
    expect(await store.listRevocations()).toEqual([])
  })

  it('revokes after a dry run and a confirmation, audited with the admin as actor', async () => {
    const { cookie, csrf } = await bootstrapSession()
    for (let i = 0; i < 3; i++) await store.record({ type: 'token.issued', time: NOW - 10, role: 'pilot', site: 'hpc-b', jti: `j-${i}`, exp: NOW + 600, decision: 'allow' })
    const dry = await postForm('/console/act/revoke', cookie, { kind: 'role', value: 'pilot', reason: 'drill', csrf })
    expect(dry.status).toBe(200)
    expect(await dry.text()).toMatch(/id="dry-run-count">3</)
    expect(await store.listRevocations()).toEqual([])
    const done = await postForm('/console/act/revoke', cookie, { kind: 'role', value: 'pilot', reason: 'drill', confirm: 'yes', csrf })
    expect(done.status).toBe(200)
    const list = await store.listRevocations()
    expect(list).toMatchObject([{ kind: 'role', value: 'pilot', reason: 'drill', revokedBy: 'bootstrap' }])
    const audit = await store.query({ type: 'token.revoked', limit: 10 })
    expect(audit.records).toHaveLength(1)
    expect(audit.records[0]!.event.caller).toMatchObject({ sub: 'bootstrap' })
  })
})

describe('console revocation of a pilot enrolment', () => {
  it('offers the kind, counts the enrolment\'s live pilot tokens in the dry run, and stores it once confirmed', async () => {
    const { cookie, csrf } = await bootstrapSession()
    const E = '0123456789abcdef0123456789abcdef'
    const pilot = (jti: string, enrolment: string) => ({
      type: 'token.issued' as const, time: NOW - 10, role: 'pilot', site: 'hpc-b', jti, exp: NOW + 600, decision: 'allow' as const, tokenKind: 'idtoken' as const,
      detail: { gen: 1, pilot: { site: 'hpc-b', job: '42', node: 'n1', enrolment } },
    })
    // Two pilots of this enrolment, and one of another cluster's enrolment at the same site and job id.
    await store.record(pilot('p-1', E))
    await store.record(pilot('p-2', E))
    await store.record(pilot('p-3', 'fedcba9876543210fedcba9876543210'))
    const page = await (await app.request('/console/act', { headers: { cookie } })).text()
    expect(page).toContain('<option value="pilot-enrolment">pilot enrolment (credential jti)</option>')
    const dry = await postForm('/console/act/revoke', cookie, { kind: 'pilot-enrolment', value: E, reason: 'teardown', csrf })
    expect(dry.status).toBe(200)
    expect(await dry.text()).toMatch(/id="dry-run-count">2</)
    expect(await store.listRevocations()).toEqual([])
    const done = await postForm('/console/act/revoke', cookie, { kind: 'pilot-enrolment', value: E, reason: 'teardown', confirm: 'yes', csrf })
    expect(done.status).toBe(200)
    expect(await store.listRevocations()).toMatchObject([{ kind: 'pilot-enrolment', value: E, reason: 'teardown', revokedBy: 'bootstrap' }])
  })

  it('links each live pilot to the revocation of its enrolment, beside its job', async () => {
    const { cookie } = await bootstrapSession()
    const E = 'abcdefabcdefabcdefabcdefabcdef01'
    await store.record({
      type: 'token.issued', time: NOW - 10, role: 'pilot', site: 'hpc-b', jti: 'p-9', exp: NOW + 600, decision: 'allow', tokenKind: 'idtoken',
      issuedSub: `pilot+hpc-b+${E}+77-n1@pilots.pool.example.org`, policyRule: 'r',
      detail: { gen: 1, pilot: { site: 'hpc-b', job: '77', node: 'n1', enrolment: E, rule: 'r', jobEnd: NOW + 3600, redeemedAt: NOW - 10 } },
    })
    const page = await (await app.request('/console/pilots', { headers: { cookie } })).text()
    expect(page).toContain(`<a href="/console/act?kind=pilot-enrolment&amp;value=${E}">revoke enrolment…</a>`)
    expect(page).toContain('<a href="/console/act?kind=pilot-job&amp;value=hpc-b%3A77">revoke job…</a>')
  })
})

describe('a console revocation whose re-read fails after it committed', () => {
  it('shows the revocation as made, says the list could not be read, and stores it once', async () => {
    // The revocation and its record committed; the reads after it (the service's refresh, the page's list)
    // met an outage. A 503 "nothing was issued or changed" would send the admin to revoke a second time.
    const { cookie, csrf } = await bootstrapSession()
    const list = store.listRevocations.bind(store)
    const revoke = store.revoke.bind(store)
    let failing = false
    store.listRevocations = (o) => failing ? Promise.reject(new AuditStoreUnavailable(new Error('database is locked'), 'read')) : list(o)
    store.revoke = async (r, e) => { const done = await revoke(r, e); failing = true; return done }
    const res = await postForm('/console/act/revoke', cookie, { kind: 'site', value: 'hpc-b', reason: 'drill', confirm: 'yes', csrf })
    failing = false
    expect(res.status).toBe(200)
    const page = await res.text()
    const stored = (await store.listRevocations()).filter((r) => r.value === 'hpc-b')
    expect(stored).toHaveLength(1)
    expect(page).toContain(`id="revocation-id">${stored[0]!.id}<`)
    expect(page).toContain('could not be read')
    expect(revocations.isRevoked({ sub: 's', iat: NOW - 10, ctb_site: 'hpc-b' })).toBe(true)
  })
})

describe('console policy explain', () => {
  it('explains a request from the form, as POST /admin/policy/explain does', async () => {
    const { cookie, csrf } = await bootstrapSession()
    const allow = await postForm('/console/act/explain', cookie, { csrf, iss: IAM, sub: 'svc', client_id: 'ctb-cloud-a-provisioner', role: 'startd', host: 'ep-3.cloud-a.example.org' })
    expect(allow.status).toBe(200)
    const text = await allow.text()
    expect(text).toMatch(/id="explain-decision">allow</)
    expect(text).toContain('startd-cloud-a-ep-3@eps.pool.example.org')
    const deny = await postForm('/console/act/explain', cookie, { csrf, iss: IAM, sub: 'u', groups: '/htc/users', role: 'job', scope: 'READ ADMINISTRATOR' })
    expect(await deny.text()).toMatch(/id="explain-decision">deny</)
    const bad = await postForm('/console/act/explain', cookie, { csrf, iss: IAM, sub: 'u' })
    expect(bad.status).toBe(400)
    expect(await bad.text()).toContain('explain: role')
  })

  it('explains a caller a revocation blocks as the token endpoint decides: denied, naming the revocation', async () => {
    const rev = await revocations.revoke({ kind: 'client', value: 'ctb-cloud-a-provisioner' }, { principal: 'bootstrap' })
    const { cookie, csrf } = await bootstrapSession()
    const res = await postForm('/console/act/explain', cookie, { csrf, iss: IAM, sub: 'svc', client_id: 'ctb-cloud-a-provisioner', role: 'startd', host: 'ep-3.cloud-a.example.org' })
    const text = await res.text()
    expect(text).toMatch(/id="explain-decision">deny</)
    // Shown inside the explanation's JSON, where the quotes carry a backslash.
    expect(text).toContain(`caller svc is blocked by revocation ${rev.id} (client \\&quot;ctb-cloud-a-provisioner\\&quot; at every trusted issuer): client ctb-cloud-a-provisioner has been revoked`)
  })
})

describe('console escaping', () => {
  async function hostileRecords(): Promise<void> {
    const e: AuditEvent = {
      type: 'token.denied', time: NOW - 30, requestId: HOSTILE, caller: { iss: IAM, sub: HOSTILE, client_id: HOSTILE },
      role: HOSTILE, site: HOSTILE, decision: 'deny', reason: HOSTILE, jti: 'hostile-1',
    }
    await store.record(e)
    await store.record({ ...e, type: 'token.issued', decision: 'allow', reason: undefined, jti: 'hostile-2', issuedSub: HOSTILE, exp: NOW + 600 })
  }

  function assertNoMarkupFromAudit(body: string): void {
    expect(body).not.toContain('<script')
    expect(body).not.toContain('<img')
    expect(body).not.toMatch(/' onmouseover='/)
    // Shown, as text (the record page shows it inside JSON, where the quotes carry a backslash).
    expect(body).toContain('&lt;script&gt;alert(')
    expect(body).toContain('&lt;img src=x onerror=alert(1)&gt;')
    expect(body).toContain('&#39; onmouseover=&#39;alert(2)')
  }

  it.each([
    ['the overview', '/console'],
    ['a search by caller', `/console/search?caller=${encodeURIComponent(HOSTILE)}`],
    ['a record', '/console/records/1'],
    ['the act page with a hostile prefilled value', `/console/act?kind=sub&value=${encodeURIComponent(HOSTILE)}`],
  ])('%s shows hostile audit strings as text', async (_name, path) => {
    await hostileRecords()
    const { cookie } = await bootstrapSession()
    const res = await app.request(path, { headers: { cookie } })
    expect(res.status).toBe(200)
    assertNoMarkupFromAudit(await res.text())
  })
})
