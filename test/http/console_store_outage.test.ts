// The console is pages: a 503 it gives is a page with Retry-After (console.test.ts, for IAM down), not the
// admin API's JSON in the browser. A store read the broker cannot make right now (a locked SQLite file, a
// PostgreSQL server restarting: AuditStoreUnavailable, docs/audit.md) is such a 503, whether it is the
// session lookup every console request starts with or a page's own read (the overview's counts).
import { beforeEach, expect, it } from 'vitest'
import { createApp } from '../../src/app.ts'
import { AuditStoreUnavailable } from '../../src/errors.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'
import { consoleAdminApp } from '../support/console_admin_app.ts'
import { cookieOf, signInWithToken } from '../support/console_sign_in.ts'

const ORIGIN = 'https://broker.example.org'
const BOOT = 'c'.repeat(43)
const NOW = Math.floor(Date.now() / 1000)
// What SQLite says of a file another process holds locked (SQLITE_BUSY, rescode.html).
const locked = () => new AuditStoreUnavailable(Object.assign(new Error('database is locked'), { code: 'ERR_SQLITE_ERROR', errcode: 5 }), 'read')

let store: MemoryStore
let app: ReturnType<typeof createApp>

beforeEach(() => {
  store = new MemoryStore()
  app = consoleAdminApp(store, BOOT, NOW)
})

async function signedIn(): Promise<string> {
  const res = await signInWithToken(app, BOOT, ORIGIN)
  expect(res.status).toBe(200)
  return `__Host-ctb-console=${cookieOf(res, '__Host-ctb-console')}`
}

async function expectUnavailablePage(res: Response, what: string): Promise<void> {
  expect(res.status, what).toBe(503)
  expect(res.headers.get('content-type'), what).toMatch(/^text\/html/)
  expect(res.headers.get('retry-after'), what).toBe(String(locked().retryAfter))
  expect(await res.text(), what).not.toContain('locked')
}

it('answers a page with Retry-After when the session cannot be read', async () => {
  const cookie = await signedIn()
  store.readConsoleSession = async () => { throw locked() }
  await expectUnavailablePage(await app.request('/console', { headers: { cookie } }), 'the overview')
})

it('answers a page with Retry-After when a page\'s own read fails', async () => {
  const cookie = await signedIn()
  store.countByTime = async () => { throw locked() }
  await expectUnavailablePage(await app.request('/console', { headers: { cookie } }), 'the overview')
})
