// Console sessions live in the audit store, not in one broker's memory: two brokers on one SQLite file
// (as two processes on one data dir, or one broker before and after a restart) honour the same session,
// and a sign-out through either ends it for both. The file holds no credential an admin signed in with.
import { createHash } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { createApp } from '../../src/app.ts'
import { bootstrapTokenAuthenticator } from '../../src/http/middleware/admin_auth.ts'
import { fixedClock } from '../../src/lib/clock.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { RevocationService } from '../../src/revocation/revocation_service.ts'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
import { testDeps } from '../support/broker_deps.ts'
import { cookieOf, signInWithToken } from '../support/console_sign_in.ts'
import { tempDir } from '../support/tmp.ts'

const ORIGIN = 'https://broker.example.org'
const BOOT = 'S3cret-bootstrap-admin-token-0123456789abcdefghij'
const NOW = Math.floor(Date.now() / 1000)

const opened: SqliteStore[] = []
afterEach(async () => {
  for (const s of opened.splice(0)) await s.close()
})

/** One broker's HTTP edge on its own connection (and writer thread) to `file`. */
function broker(file: string) {
  const store = new SqliteStore({ file })
  opened.push(store)
  const revocations = new RevocationService({
    store, clock: fixedClock(NOW), log: silentLogger, maxTokenLifetime: 86400, refreshSeconds: 60,
    knownLabels: () => ({ roles: new Set(), sites: new Set() }),
  })
  const app = createApp(testDeps({
    admin: { audit: store, revocations, authenticators: [bootstrapTokenAuthenticator(createHash('sha256').update(BOOT).digest())] },
    console: { keys: () => ({ scitoken: [], condor: [] }), sessionSeconds: 3600, sessions: store },
  }))
  return { store, app }
}

type App = ReturnType<typeof createApp>

async function signIn(app: App): Promise<{ id: string; cookie: string }> {
  const res = await signInWithToken(app, BOOT, ORIGIN)
  expect(res.status).toBe(200)
  const id = cookieOf(res, '__Host-ctb-console')!
  return { id, cookie: `__Host-ctb-console=${id}` }
}

/** The overview's status and, when signed in, the CSRF token its forms carry. */
async function overview(app: App, cookie: string): Promise<{ status: number; csrf?: string }> {
  const res = await app.request('/console', { headers: { cookie }, redirect: 'manual' })
  const csrf = /name="csrf" value="([^"]+)"/.exec(await res.text())?.[1]
  return { status: res.status, ...(csrf ? { csrf } : {}) }
}

describe('console sessions shared through the SQLite audit store', () => {
  it('a session made through one broker is valid through another on the same file; sign-out through either ends it for both', async () => {
    const file = join(tempDir(), 'audit.db')
    const a = broker(file)
    const b = broker(file)
    const { cookie } = await signIn(a.app)
    const onA = await overview(a.app, cookie)
    const onB = await overview(b.app, cookie)
    expect(onA.status).toBe(200)
    expect(onB.status).toBe(200)
    // One session, one CSRF token: a form rendered by one broker posts fine to the other.
    expect(onB.csrf).toBe(onA.csrf)

    const out = await b.app.request('/console/sign-out', {
      method: 'POST', headers: { origin: ORIGIN, cookie, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ csrf: onA.csrf! }),
    })
    expect(out.status).toBe(303)
    expect(out.headers.get('location')).toBe('/console/sign-in?signed-out')
    expect(await overview(a.app, cookie)).toEqual({ status: 303 })
    expect(await overview(b.app, cookie)).toEqual({ status: 303 })
  })

  it('survives a restart: the session made before it is honoured after it', async () => {
    const file = join(tempDir(), 'audit.db')
    const before = broker(file)
    const { cookie } = await signIn(before.app)
    await opened.shift()!.close()
    const after = broker(file)
    expect((await overview(after.app, cookie)).status).toBe(200)
  })

  it('leaves neither the bearer nor the session id in the database files', async () => {
    const dir = tempDir()
    const a = broker(join(dir, 'audit.db'))
    const { id, cookie } = await signIn(a.app)
    expect((await overview(a.app, cookie)).status).toBe(200)
    const bytes = readdirSync(dir).map((f) => readFileSync(join(dir, f)).toString('latin1')).join('\n')
    expect(bytes).toContain(createHash('sha256').update(id).digest('base64url'))
    expect(bytes).not.toContain(BOOT)
    expect(bytes).not.toContain(id)
  })
})
