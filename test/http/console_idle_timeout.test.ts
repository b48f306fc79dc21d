// The console's session ends when the admin stops using it, and its cookie is a session cookie: what an
// admin console is expected to do (OWASP ASVS v4 §3.3.2: idle and absolute timeouts, enforced by the
// server; RFC 6265 §4.1.2.1-2: a cookie with neither Max-Age nor Expires is dropped when the browser's
// session ends). The clock is injected, so the idle window is walked through rather than waited for.
import { createHash } from 'node:crypto'
import { beforeEach, describe, expect, it } from 'vitest'
import { createApp } from '../../src/app.ts'
import { bootstrapTokenAuthenticator } from '../../src/http/middleware/admin_auth.ts'
import { fixedClock, type Clock } from '../../src/lib/clock.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { RevocationService } from '../../src/revocation/revocation_service.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'
import { testDeps } from '../support/broker_deps.ts'
import { cookieOf, signInWithToken } from '../support/console_sign_in.ts'

const ORIGIN = 'https://broker.example.org'
const BOOT = 'b'.repeat(43)
const START = 1_800_000_000
const IDLE = 900
const SESSION = 8 * 3600

let t: number
const clock: Clock = { now: () => t }
let store: MemoryStore

function consoleApp(console: { idleSeconds?: number; persistentCookie?: boolean } = {}) {
  const revocations = new RevocationService({ store, clock: fixedClock(START), log: silentLogger, maxTokenLifetime: 86400, refreshSeconds: 60, knownLabels: () => ({ roles: new Set(), sites: new Set() }) })
  return createApp(testDeps({
    admin: { audit: store, revocations, authenticators: [bootstrapTokenAuthenticator(createHash('sha256').update(BOOT).digest())] },
    console: { keys: () => ({ scitoken: [], condor: [] }), sessionSeconds: SESSION, sessions: store, clock, ...console },
  }))
}

async function signedIn(app: ReturnType<typeof createApp>): Promise<{ cookie: string; line: string }> {
  const res = await signInWithToken(app, BOOT, ORIGIN)
  expect(res.status).toBe(200)
  const line = res.headers.getSetCookie().find((l) => l.startsWith('__Host-ctb-console='))!
  return { cookie: `__Host-ctb-console=${cookieOf(res, '__Host-ctb-console')}`, line }
}

const page = (app: ReturnType<typeof createApp>, cookie: string) => app.request('/console/pilots', { headers: { cookie }, redirect: 'manual' })

beforeEach(() => {
  t = START
  store = new MemoryStore()
})

describe('console idle timeout', () => {
  it('signs out an admin idle for idle_seconds, on the server: the same cookie is refused and the row is gone', async () => {
    const app = consoleApp({ idleSeconds: IDLE })
    const { cookie } = await signedIn(app)
    t = START + IDLE - 1
    expect((await page(app, cookie)).status).toBe(200)
    // Idle counts from that click, not from the sign-in.
    t = START + 2 * IDLE - 61
    expect((await page(app, cookie)).status).toBe(200)
    t += IDLE
    const res = await page(app, cookie)
    expect(res.status).toBe(303)
    expect(res.headers.get('location')).toBe('/console/sign-in')
    expect(store.rawSessions().size).toBe(0)
  })

  it('keeps the absolute limit: an admin clicking every 10 minutes is signed out after session_seconds', async () => {
    const app = consoleApp({ idleSeconds: IDLE })
    const { cookie } = await signedIn(app)
    for (t = START + 600; t < START + SESSION; t += 600) expect((await page(app, cookie)).status, String(t - START)).toBe(200)
    t = START + SESSION
    expect((await page(app, cookie)).status).toBe(303)
  })

  it('defaults to 30 minutes of idleness', async () => {
    const app = consoleApp()
    const { cookie } = await signedIn(app)
    t = START + 1799
    expect((await page(app, cookie)).status).toBe(200)
    t += 1800
    expect((await page(app, cookie)).status).toBe(303)
  })
})

describe('console session cookie', () => {
  it('is a session cookie by default: no Max-Age, no Expires, so it ends with the browser', async () => {
    const { line } = await signedIn(consoleApp({ idleSeconds: IDLE }))
    expect(line).toMatch(/; HttpOnly/)
    expect(line).not.toMatch(/max-age/i)
    expect(line).not.toMatch(/expires/i)
  })

  it('outlives the browser only when configured (persistent_cookie): Max-Age is session_seconds', async () => {
    const { line } = await signedIn(consoleApp({ idleSeconds: IDLE, persistentCookie: true }))
    expect(line).toMatch(new RegExp(`; Max-Age=${SESSION}(;|$)`))
  })
})
