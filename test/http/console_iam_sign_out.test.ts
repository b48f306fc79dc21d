// Signing out of the console also ends the admin's session at IAM when IAM offers that: OpenID Connect
// RP-Initiated Logout 1.0. What is expected comes from that spec:
//  - §2.1: the OP advertises `end_session_endpoint` in its discovery metadata; an RP uses it only then;
//  - §2: the RP sends the browser there with `id_token_hint` (RECOMMENDED: the ID token IAM issued this
//    sign-in), `post_logout_redirect_uri` (a URI registered for the client) and `client_id`;
//  - without the endpoint, the RP can do no more than end its own session (the console's sign-out of today).
// IAM is msw at the HTTP edge (test/support/iam.ts): discovery, the code grant with PKCE, the ID token.
import { decodeJwt } from 'jose'
import { beforeEach, describe, expect, it } from 'vitest'
import { createApp } from '../../src/app.ts'
import { oidcSignIn } from '../../src/console/oidc_sign_in.ts'
import type { AdminAuthenticator } from '../../src/http/middleware/admin_auth.ts'
import { IamDiscovery } from '../../src/iam/discovery.ts'
import { systemClock } from '../../src/lib/clock.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { RevocationService } from '../../src/revocation/revocation_service.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'
import { testDeps } from '../support/broker_deps.ts'
import { cookieOf } from '../support/console_sign_in.ts'
import { iamConfigFor, mswFetch, secretReader, TestIam, useMswIam } from '../support/iam.ts'

const ORIGIN = 'https://broker.example.org'
const REDIRECT = `${ORIGIN}/console/callback`
const iam = await TestIam.create({ issuer: 'https://iam.test.example/' })
useMswIam(iam)

/** The admin decision is not what this file is about: IAM's access tokens for sub "alice" are admins. */
const aliceIsAdmin: AdminAuthenticator = {
  authenticate: async (t) => {
    const claims = (() => { try { return decodeJwt(t) } catch { return undefined } })()
    return claims?.iss === iam.issuer && claims.sub === 'alice' ? { id: `${iam.issuer},alice`, via: 'iam:test', claims: { iss: iam.issuer, sub: 'alice' } } : null
  },
}

let store: MemoryStore
let app: ReturnType<typeof createApp>
/** The broker's clock, walked forward to make a session idle; starts at the real time IAM's tokens use. */
let t: number
const IDLE = 900

/** A broker over `store` whose discovery cache is empty (as after a restart). */
async function brokerApp(): Promise<ReturnType<typeof createApp>> {
  const discovery = await IamDiscovery.create(iamConfigFor(iam), { fetch: mswFetch, clock: systemClock, log: silentLogger, readFile: secretReader(iam) })
  const revocations = new RevocationService({ store, clock: systemClock, log: silentLogger, maxTokenLifetime: 86400, refreshSeconds: 60, knownLabels: () => ({ roles: new Set(), sites: new Set() }) })
  return createApp(testDeps({
    admin: { audit: store, revocations, authenticators: [aliceIsAdmin] },
    console: { signIn: oidcSignIn(discovery, iam.issuer, REDIRECT, () => systemClock.now()), keys: () => ({ scitoken: [], condor: [] }), sessionSeconds: 3600, sessions: store, clock: { now: () => t }, idleSeconds: IDLE },
  }))
}

beforeEach(async () => {
  t = systemClock.now()
  iam.endSession = false
  store = new MemoryStore()
  app = await brokerApp()
})

/** Sign-in at the (msw) IAM as alice; the session cookie and the page's CSRF token. */
async function signedInAtIam(): Promise<{ cookie: string; csrf: string }> {
  const start = await app.request('/console/login', { redirect: 'manual' })
  expect(start.status).toBe(303)
  const authorize = new URL(start.headers.get('location')!)
  const code = iam.issueCode(authorize, 'alice')
  const back = await app.request(`/console/callback?code=${code}&state=${authorize.searchParams.get('state')}`, {
    headers: { cookie: `__Host-ctb-console-login=${cookieOf(start, '__Host-ctb-console-login')}` },
  })
  expect(back.status).toBe(200)
  const cookie = `__Host-ctb-console=${cookieOf(back, '__Host-ctb-console')}`
  const overview = await app.request('/console', { headers: { cookie } })
  expect(overview.status).toBe(200)
  return { cookie, csrf: /name="csrf" value="([^"]+)"/.exec(await overview.text())![1]! }
}

const signOut = (cookie: string, csrf: string) => app.request('/console/sign-out', {
  method: 'POST', redirect: 'manual', headers: { origin: ORIGIN, cookie, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ csrf }),
})

/** Where a sign-out answer sends the browser: a redirect's Location, or the page's refresh target. */
async function destination(res: Response): Promise<string> {
  if (res.status === 303) return res.headers.get('location')!
  const refresh = /<meta http-equiv="refresh" content="0;url=([^"]+)">/.exec(await res.text())
  return refresh![1]!.replaceAll('&amp;', '&')
}

describe('console sign-out with IAM\'s end_session_endpoint (RP-Initiated Logout 1.0)', () => {
  it('ends the console session and sends the browser to IAM with id_token_hint, post_logout_redirect_uri and client_id', async () => {
    iam.endSession = true
    const { cookie, csrf } = await signedInAtIam()
    const res = await signOut(cookie, csrf)
    // Not a redirect: the console's CSP (form-action 'self') makes browsers refuse a form post redirected to
    // another origin, so a page of our own moves on to IAM.
    expect(res.status).toBe(200)
    const to = new URL(await destination(res))
    expect(`${to.origin}${to.pathname}`).toBe(`${iam.base}/logout`)
    expect(to.searchParams.get('id_token_hint')).toBe(iam.idTokens.at(-1))
    expect(to.searchParams.get('post_logout_redirect_uri')).toBe(`${ORIGIN}/console/sign-in?signed-out`)
    expect(to.searchParams.get('client_id')).toBe(iam.brokerClientId)
    expect(res.headers.getSetCookie().find((l) => l.startsWith('__Host-ctb-console='))).toMatch(/Max-Age=0/)
    // The console session is over whatever IAM then does.
    expect(store.rawSessions().size).toBe(0)
    expect((await app.request('/console', { headers: { cookie }, redirect: 'manual' })).status).toBe(303)
  })

  it('a session gone idle still ends at IAM when its admin signs out: the idle limit ended the console session, not IAM\'s', async () => {
    // The admin comes back to the open page after the idle limit and presses "Sign out", expecting to be
    // signed out at IAM too (or the next "Sign in with IAM" at this desk goes straight through as them).
    // The cookie and the page's CSRF token still prove it is their browser; RP-Initiated Logout 1.0 §2
    // lets the OP accept an id_token_hint whatever its exp.
    iam.endSession = true
    const { cookie, csrf } = await signedInAtIam()
    t += IDLE + 1
    const res = await signOut(cookie, csrf)
    expect(res.status).toBe(200)
    const to = new URL(await destination(res))
    expect(`${to.origin}${to.pathname}`).toBe(`${iam.base}/logout`)
    expect(to.searchParams.get('id_token_hint')).toBe(iam.idTokens.at(-1))
    expect(store.rawSessions().size).toBe(0)
  })

  it('a session gone idle, signed out without its CSRF token: console only, IAM is not asked', async () => {
    iam.endSession = true
    const { cookie } = await signedInAtIam()
    t += IDLE + 1
    const res = await signOut(cookie, 'x'.repeat(43))
    expect(res.status).toBe(303)
    expect(res.headers.get('location')).toBe('/console/sign-in?signed-out')
    expect(store.rawSessions().size).toBe(0)
  })

  it('a cross-site form post to sign-out clears no cookie: the admin stays signed in', async () => {
    // Another site's auto-submitting form: a top-level cross-site POST. The SameSite=Strict session cookie
    // is not sent with it, but RFC 6265bis §5.7 (draft-ietf-httpbis-rfc6265bis, storage model: a cookie
    // "received from a request which is navigating a top-level browsing context" is stored whatever its
    // SameSite) lets the answer's Set-Cookie delete it, which would sign the admin out from another site.
    const { cookie } = await signedInAtIam()
    const res = await app.request('/console/sign-out', {
      method: 'POST', redirect: 'manual', headers: { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site', 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ csrf: 'x' }),
    })
    expect(res.headers.getSetCookie().filter((l) => l.startsWith('__Host-ctb-console='))).toEqual([])
    expect(store.rawSessions().size).toBe(1)
    expect((await app.request('/console', { headers: { cookie } })).status).toBe(200)
  })

  it('an end_session_endpoint that is not https is not followed: console only, the ID token stays home', async () => {
    // RP-Initiated Logout 1.0 §2.1: the end_session_endpoint URL MUST use the https scheme. The ID token
    // rides in its query, so a plain-http endpoint would hand it to anyone on the path.
    iam.endSession = 'http://iam.test.example/logout'
    const { cookie, csrf } = await signedInAtIam()
    const res = await signOut(cookie, csrf)
    expect(res.status).toBe(303)
    expect(res.headers.get('location')).toBe('/console/sign-in?signed-out')
    expect(store.rawSessions().size).toBe(0)
  })

  it('without end_session_endpoint, signs out of the console only, as before', async () => {
    const { cookie, csrf } = await signedInAtIam()
    const res = await signOut(cookie, csrf)
    expect(res.status).toBe(303)
    expect(res.headers.get('location')).toBe('/console/sign-in?signed-out')
    expect(store.rawSessions().size).toBe(0)
  })

  it('a bootstrap-token session has no IAM session to end: console only, even when IAM offers logout', async () => {
    iam.endSession = true
    const boot = 'b'.repeat(43)
    const { createHash } = await import('node:crypto')
    const { bootstrapTokenAuthenticator } = await import('../../src/http/middleware/admin_auth.ts')
    const { signInWithToken } = await import('../support/console_sign_in.ts')
    const revocations = new RevocationService({ store, clock: systemClock, log: silentLogger, maxTokenLifetime: 86400, refreshSeconds: 60, knownLabels: () => ({ roles: new Set(), sites: new Set() }) })
    const discovery = await IamDiscovery.create(iamConfigFor(iam), { fetch: mswFetch, clock: systemClock, log: silentLogger, readFile: secretReader(iam) })
    app = createApp(testDeps({
      admin: { audit: store, revocations, authenticators: [bootstrapTokenAuthenticator(createHash('sha256').update(boot).digest())] },
      console: { signIn: oidcSignIn(discovery, iam.issuer, REDIRECT, () => systemClock.now()), keys: () => ({ scitoken: [], condor: [] }), sessionSeconds: 3600, sessions: store },
    }))
    const signed = await signInWithToken(app, boot, ORIGIN)
    const cookie = `__Host-ctb-console=${cookieOf(signed, '__Host-ctb-console')}`
    const csrf = /name="csrf" value="([^"]+)"/.exec(await (await app.request('/console', { headers: { cookie } })).text())![1]!
    const res = await signOut(cookie, csrf)
    expect(res.status).toBe(303)
    expect(res.headers.get('location')).toBe('/console/sign-in?signed-out')
  })

  it('IAM unreachable at sign-out: the console session still ends, and the browser goes to the sign-in page', async () => {
    iam.endSession = true
    const { cookie, csrf } = await signedInAtIam()
    // Another replica, or this one restarted: no discovery document at hand, and IAM cannot be asked.
    app = await brokerApp()
    iam.faults.discovery = 'down'
    try {
      const res = await signOut(cookie, csrf)
      expect(res.status).toBe(303)
      expect(res.headers.get('location')).toBe('/console/sign-in?signed-out')
      expect(store.rawSessions().size).toBe(0)
    } finally {
      iam.faults.discovery = 'ok'
    }
  })
})
