import { createHash } from 'node:crypto'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import { expect, it } from 'vitest'
import type { CredentialWrite } from '../../src/credentials/credential_store.ts'
import { useCredentialsApp } from '../support/credentials_app.ts'

/**
 * Shutdown with a store write that never returns (a database hung in a failover). The credential
 * services' close() writes held rotated refresh tokens once more before the store closes; it must not
 * wait for ever on that write, or SIGTERM's bounded shutdown (shutdown_grace_seconds for requests, then
 * the services) never ends. docs/job-credentials.md: after a grace of 5 s close() keeps what is still
 * unstored on disk and returns, and the next start takes it up.
 */
const t = await useCredentialsApp()

const CLOSE_GRACE_MS = 5_000

const spillDir = () => join(t.config.data_dir, 'credentials', 'held')
const spillFileName = (user: string) => `${createHash('sha256').update(`${user}\ncms`).digest('hex')}.json`
const spilled = (): string[] => { try { return readdirSync(spillDir()).filter((n) => !n.startsWith('.')) } catch { return [] } }

async function register(user: string): Promise<string> {
  expect((await t.register(await t.userToken({ preferred_username: user, sub: `${user}-sub` }), { provider: 'cms' })).status).toBe(201)
  return (await t.store.readCredential(user, 'cms'))!.sealed!.nonce
}

const jobToken = (app: typeof t.app, user: string, query = '') => app.request(`/v1/credentials/${user}/cms/token${query}`, { headers: { authorization: `Bearer ${t.creddToken()}` } })

/** Bounded poll. */
async function until(check: () => Promise<boolean> | boolean): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    if (await check()) return true
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return false
}

it('returns within its grace when the last write of held tokens never resolves, and keeps them on disk for the next start', { timeout: 30_000 }, async () => {
  const kayBefore = await register('kay')
  const leoBefore = await register('leo')
  const first = t.restartCredentials()
  const write = t.store.writeCredential.bind(t.store)
  // kay: the store refuses the rotation (an outage), so the token is held and retried; then the store hangs.
  // leo: the rotation's first write hangs already, with the job-token request waiting on it.
  let mode: 'refuse' | 'hang' = 'refuse'
  t.store.writeCredential = async (w: CredentialWrite, e) => {
    if (w.action === 'rotate' && (w.user === 'kay' || w.user === 'leo')) {
      if (mode === 'refuse') throw new Error('SQLITE_BUSY: database is locked')
      return new Promise<boolean>(() => {})
    }
    return write(w, e)
  }
  try {
    expect((await jobToken(first.app, 'kay')).status).toBe(200)
    mode = 'hang'
    void jobToken(first.app, 'leo')
    expect(await until(() => first.credentials.unstoredRefreshTokens().memory === 2)).toBe(true)
    const started = Date.now()
    await first.credentials.close()
    const took = Date.now() - started
    expect(took).toBeGreaterThanOrEqual(CLOSE_GRACE_MS - 100)
    expect(took).toBeLessThan(CLOSE_GRACE_MS + 2_000)
    // Both held tokens are on disk for the next start, though no write landed.
    expect(spilled().sort()).toEqual([spillFileName('kay'), spillFileName('leo')].sort())
    expect((await t.store.readCredential('kay', 'cms'))!.sealed!.nonce).toBe(kayBefore)
    expect((await t.store.readCredential('leo', 'cms'))!.sealed!.nonce).toBe(leoBefore)
  } finally {
    t.store.writeCredential = write
  }
  // The next start, the store healthy: both are stored, and their credentials go on being refreshed.
  const restarted = t.restartCredentials()
  try {
    expect(await until(async () => (await t.store.readCredential('kay', 'cms'))!.sealed!.nonce !== kayBefore
      && (await t.store.readCredential('leo', 'cms'))!.sealed!.nonce !== leoBefore)).toBe(true)
    expect((await jobToken(restarted.app, 'kay', '?minimum_seconds=999999')).status).toBe(200)
    expect((await jobToken(restarted.app, 'leo', '?minimum_seconds=999999')).status).toBe(200)
    expect(await t.store.readCredential('leo', 'cms')).toMatchObject({ revoked: false })
  } finally {
    await restarted.credentials.close()
  }
})
