// A hostile review of the console's edge: what an attacker who controls audit strings, or a page that
// posts to the console, can make an admin see or do. Each test names the finding it guards.
import { createHash } from 'node:crypto'
import { beforeEach, describe, expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/audit_log.ts'
import { createApp } from '../../src/app.ts'
import type { ConsoleSignIn } from '../../src/console/oidc_sign_in.ts'
import { bootstrapTokenAuthenticator } from '../../src/http/middleware/admin_auth.ts'
import { fixedClock } from '../../src/lib/clock.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { RevocationService } from '../../src/revocation/revocation_service.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'
import { testDeps } from '../support/broker_deps.ts'
import { cookieOf, signInWithToken } from '../support/console_sign_in.ts'

const ORIGIN = 'https://broker.example.org'
const BOOT = 'b'.repeat(43)
const IAM = 'https://iam.example.org/'
const NOW = Math.floor(Date.now() / 1000)

let store: MemoryStore
let app: ReturnType<typeof createApp>

beforeEach(() => {
  store = new MemoryStore()
  const revocations = new RevocationService({
    store, clock: fixedClock(NOW), log: silentLogger, maxTokenLifetime: 86400, refreshSeconds: 60,
    knownLabels: () => ({ roles: new Set(['pilot']), sites: new Set(['hpc-b']) }),
    knownIssuers: () => new Set([IAM]),
  })
  app = createApp(testDeps({
    admin: { audit: store, revocations, authenticators: [bootstrapTokenAuthenticator(createHash('sha256').update(BOOT).digest())] },
    console: { keys: () => ({ scitoken: [], condor: [] }), sessionSeconds: 3600, sessions: store },
  }))
})

async function session(): Promise<{ cookie: string; csrf: string }> {
  const res = await signInWithToken(app, BOOT, ORIGIN)
  expect(res.status).toBe(200)
  const cookie = `__Host-ctb-console=${cookieOf(res, '__Host-ctb-console')}`
  const overview = await (await app.request('/console', { headers: { cookie } })).text()
  return { cookie, csrf: /name="csrf" value="([^"]+)"/.exec(overview)![1]! }
}

describe('bidi and invisible format characters in audit strings', () => {
  // Unicode TR #9 (bidi) and "Trojan Source" (CVE-2021-42574): U+202E RIGHT-TO-LEFT OVERRIDE makes
  // "alice<RLO>nimda" display as "alice" followed by "admin" reversed, so an auditor reads a different
  // subject than the one recorded; U+200B ZERO WIDTH SPACE makes two different subjects look the same.
  const RLO = '\u202E'
  const ZWSP = '\u200B'
  const LRI = '\u2066'
  const SPOOF = `alice${RLO}nimda`

  async function spoofedRecord(): Promise<void> {
    const e: AuditEvent = {
      type: 'token.denied', time: NOW - 30, requestId: `req${ZWSP}1`, caller: { iss: IAM, sub: SPOOF, client_id: `cli${LRI}ent` },
      decision: 'deny', reason: `policy${RLO}x${ZWSP}yz`, jti: 'bidi-1',
    }
    await store.record(e)
  }

  it.each([
    ['a search by jti', '/console/search?jti=bidi-1'],
    ['the record', '/console/records/1'],
  ])('%s shows them as visible code points, never raw', async (_name, path) => {
    await spoofedRecord()
    const { cookie } = await session()
    const res = await app.request(path, { headers: { cookie } })
    expect(res.status).toBe(200)
    const body = await res.text()
    for (const ch of [RLO, ZWSP, LRI]) expect(body).not.toContain(ch)
    expect(body).toContain('U+202E')
    expect(body).toContain('U+200B')
    expect(body).toContain('U+2066')
  })

  it('keeps the exact value in the search form it echoes, so searching again finds the same records', async () => {
    await spoofedRecord()
    const { cookie } = await session()
    const res = await app.request(`/console/search?caller=${encodeURIComponent(SPOOF)}`, { headers: { cookie } })
    expect(res.status).toBe(200)
    const body = await res.text()
    // The field holds the value byte for byte (a browser shows it as typed, the next search sends it back);
    // the result row beside it shows the code point.
    expect(body).toContain(`name="caller" value="${SPOOF}"`)
    expect(body).toMatch(/<td class="mono">alice[^<]*U\+202E[^<]*nimda/)
  })
})

describe('the Origin check of console forms', () => {
  // docs/console.md, CSRF: a state-changing POST's Origin "must be the broker's". Browsers send Origin on
  // every POST; a request without one did not come from our pages through a browser that follows the
  // rules (a privacy extension or proxy stripping it, a script outside the browser), so it is refused as
  // one from another origin is, whatever token it carries: fail closed on the second lock too.
  it('refuses a signed-in POST without an Origin header, even with the session\'s CSRF token', async () => {
    const { cookie, csrf } = await session()
    const res = await app.request('/console/act/revoke', {
      method: 'POST', headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ csrf, kind: 'role', value: 'pilot', confirm: 'yes' }),
    })
    expect(res.status).toBe(403)
    expect(await store.listRevocations()).toEqual([])
    // Reloading cannot help a browser that strips Origin: the page says what is missing instead.
    const text = await res.text()
    expect(text).toContain('without an Origin header')
    expect(text).not.toContain('reload')
  })

  it('refuses the bootstrap-token form without an Origin header', async () => {
    const page = await app.request('/console/sign-in')
    const pre = cookieOf(page, '__Host-ctb-console-pre')!
    const preCsrf = /name="csrf" value="([^"]+)"/.exec(await page.text())![1]!
    const res = await app.request('/console/sign-in/token', {
      method: 'POST', headers: { cookie: `__Host-ctb-console-pre=${pre}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ csrf: preCsrf, token: BOOT }),
    })
    expect(res.status).toBe(403)
    expect(cookieOf(res, '__Host-ctb-console')).toBeUndefined()
    const text = await res.text()
    expect(text).toContain('without an Origin header')
    expect(text).not.toContain('reload')
  })

  it('still accepts the same POST with the broker\'s Origin', async () => {
    const { cookie, csrf } = await session()
    const res = await app.request('/console/act/revoke', {
      method: 'POST', headers: { origin: ORIGIN, cookie, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ csrf, kind: 'role', value: 'pilot', confirm: 'yes' }),
    })
    expect(res.status).toBe(200)
    expect(await store.listRevocations()).toMatchObject([{ kind: 'role', value: 'pilot' }])
  })
})

describe('search times that no calendar holds', () => {
  // The form's times are UTC date-times (datetime-local). February has no 31st and no minute is 99: a
  // parser that rolls them over into March, or into the next hour, searches a range the auditor did not
  // ask for and says nothing. They are refused, as "soon" is.
  it.each(['2026-02-31T10:00', '2026-04-31T00:00', '2026-01-01T24:00', '2026-01-01T10:60', '2026-01-01T10:00:60', '2027-02-29T00:00', '2100-02-29T00:00'])('refuses from=%s with a 400 page', async (t) => {
    const { cookie } = await session()
    const res = await app.request(`/console/search?from=${t}`, { headers: { cookie } })
    expect(res.status).toBe(400)
    expect(await res.text()).toContain('from must be a date and time')
  })

  it('searches a leap day that exists (2028 is a leap year; Gregorian rule)', async () => {
    await store.record({ type: 'token.denied', time: Date.UTC(2028, 1, 29, 23, 59, 10) / 1000, caller: { iss: IAM, sub: 'x' }, decision: 'deny', reason: 'r', jti: 'leap-day' })
    const { cookie } = await session()
    const res = await app.request('/console/search?from=2028-02-29T23:59&to=2028-02-29T23:59', { headers: { cookie } })
    expect(res.status).toBe(200)
    expect(await res.text()).toContain('leap-day')
  })

  it('still searches from a real date, to the end of its minute', async () => {
    await store.record({ type: 'token.denied', time: Date.UTC(2026, 1, 28, 10, 0, 30) / 1000, caller: { iss: IAM, sub: 'x' }, decision: 'deny', reason: 'r', jti: 'feb-28' })
    const { cookie } = await session()
    const res = await app.request('/console/search?from=2026-02-28T10:00&to=2026-02-28T10:00', { headers: { cookie } })
    expect(res.status).toBe(200)
    expect(await res.text()).toContain('feb-28')
  })
})

describe('search cursors made up by hand', () => {
  // The cursor is opaque to the browser but comes back in the URL, so anyone can edit it. A made-up one is
  // the client's error (400 page with the form), never a 500 or a query the store did not expect.
  it.each([
    ['not base64url of a position', 'zzzz'],
    ['SQL in the cursor', Buffer.from("1:1' OR 1=1 --").toString('base64url')],
    ['a position wider than the store holds', Buffer.from(`${'9'.repeat(16)}:1`).toString('base64url')],
    ['a negative position', Buffer.from('-1:-1').toString('base64url')],
  ])('refuses %s with a 400 page', async (_name, cursor) => {
    const { cookie } = await session()
    const res = await app.request(`/console/search?type=token.denied&cursor=${encodeURIComponent(cursor)}`, { headers: { cookie } })
    expect(res.status).toBe(400)
    expect(res.headers.get('content-type')).toMatch(/^text\/html/)
    expect(await res.text()).toContain('cursor is not valid')
  })

  it('pages on with the cursor the page itself links to', async () => {
    // 101 records, 100 a page (docs/console.md): the oldest is on the second page only.
    for (let i = 0; i < 101; i++) await store.record({ type: 'token.denied', time: NOW - 1000 + i, caller: { iss: IAM, sub: 'x' }, decision: 'deny', reason: 'r', jti: `page-${i}` })
    const { cookie } = await session()
    const first = await (await app.request('/console/search?type=token.denied', { headers: { cookie } })).text()
    expect(first).not.toContain('>page-0<')
    const next = /<a href="(\/console\/search\?[^"]+)">next page<\/a>/.exec(first)![1]!.replaceAll('&amp;', '&')
    const second = await (await app.request(next, { headers: { cookie } })).text()
    expect(second).toContain('>page-0<')
    expect(second).not.toContain('>page-1<')
  })
})

describe('console pages and same-site neighbours', () => {
  // SameSite=Strict keeps other sites' requests unauthenticated, but not those of a neighbour on the same
  // site (wiki.example.org beside broker.example.org): its page may load a console URL with the admin's
  // cookie as an image or a no-cors fetch. It cannot read the answer directly; Cross-Origin-Resource-Policy
  // same-origin (Fetch standard, "cross-origin resource policy check") keeps the answer out of its process
  // altogether, so no side channel (Spectre) reads audit data either, and Cross-Origin-Opener-Policy
  // same-origin (HTML standard) gives a console opened from such a page no window handle back to it.
  it.each(['/console', '/console/search?jti=x', '/console/sign-in', '/console/static/console.css'])('%s answers with CORP and COOP same-origin', async (path) => {
    const { cookie } = await session()
    const res = await app.request(path, { headers: { cookie } })
    expect(res.status).toBe(200)
    expect(res.headers.get('cross-origin-resource-policy')).toBe('same-origin')
    expect(res.headers.get('cross-origin-opener-policy')).toBe('same-origin')
  })
})

describe('the IAM callback and the sign-in this browser started', () => {
  // RFC 6749 §10.12 and RFC 9700 §4.7: the callback is honoured only for the state this browser was sent to
  // IAM with, and only while the sign-in is young (10 minutes, docs/console.md). Anything else is refused
  // before IAM is asked to redeem the code.
  let redeemed: number
  let signInApp: ReturnType<typeof createApp>
  beforeEach(() => {
    redeemed = 0
    const signIn: ConsoleSignIn = {
      async start() { return { url: 'https://iam.example.org/authorize', codeVerifier: 'v'.repeat(43), nonce: 'n', state: 'state-mine' } },
      async finish() { redeemed++; return { accessToken: BOOT } },
    }
    signInApp = createApp(testDeps({
      admin: { audit: store, revocations: new RevocationService({ store, clock: fixedClock(NOW), log: silentLogger, maxTokenLifetime: 86400, refreshSeconds: 60, knownLabels: () => ({ roles: new Set(), sites: new Set() }), knownIssuers: () => new Set([IAM]) }), authenticators: [bootstrapTokenAuthenticator(createHash('sha256').update(BOOT).digest())] },
      console: { signIn, keys: () => ({ scitoken: [], condor: [] }), sessionSeconds: 3600, sessions: store },
    }))
  })
  const pending = (p: Record<string, unknown>) => `__Host-ctb-console-login=${Buffer.from(JSON.stringify(p)).toString('base64url')}`

  it('refuses a callback whose state is not the one this browser holds (another browser\'s code)', async () => {
    const start = await signInApp.request('/console/login', { redirect: 'manual' })
    const login = `__Host-ctb-console-login=${cookieOf(start, '__Host-ctb-console-login')}`
    const res = await signInApp.request('/console/callback?code=c&state=state-theirs', { headers: { cookie: login } })
    expect(res.status).toBe(400)
    expect(cookieOf(res, '__Host-ctb-console')).toBeUndefined()
    expect(redeemed).toBe(0)
  })

  it('refuses a sign-in older than its 10 minutes', async () => {
    const res = await signInApp.request('/console/callback?code=c&state=s', { headers: { cookie: pending({ state: 's', codeVerifier: 'v', nonce: 'n', expiresAt: Math.floor(Date.now() / 1000) - 1 }) } })
    expect(res.status).toBe(400)
    expect(redeemed).toBe(0)
  })

  it('refuses an empty state even when the cookie holds an empty one', async () => {
    const res = await signInApp.request('/console/callback?code=c', { headers: { cookie: pending({ state: '', codeVerifier: 'v', nonce: 'n', expiresAt: Math.floor(Date.now() / 1000) + 300 }) } })
    expect(res.status).toBe(400)
    expect(redeemed).toBe(0)
  })

  it('answers the callback with the cookie cleared, so the same sign-in cannot complete twice', async () => {
    const start = await signInApp.request('/console/login', { redirect: 'manual' })
    const login = `__Host-ctb-console-login=${cookieOf(start, '__Host-ctb-console-login')}`
    const res = await signInApp.request('/console/callback?code=c&state=state-mine', { headers: { cookie: login } })
    expect(res.status).toBe(200)
    const cleared = res.headers.getSetCookie().find((l) => l.startsWith('__Host-ctb-console-login='))!
    expect(cleared).toMatch(/Max-Age=0/)
  })
})
