import { expect, it, vi } from 'vitest'
import { createLogger } from '../../src/lib/logger.ts'
import type { CredentialWrite } from '../../src/credentials/credential_store.ts'
import { useCredentialsApp } from '../support/credentials_app.ts'

/**
 * Shutdown while the disk of the held-token files does not answer either: with SQLite the database and
 * data_dir/credentials/held are usually on one disk, so the hung store that close()'s grace is for comes
 * with a hung spill. close() must still return (docs/job-credentials.md): it cannot put the token on disk
 * then, and says so, but SIGTERM's shutdown must end.
 */
const disk = vi.hoisted(() => ({ hang: false }))
vi.mock(import('../../src/lib/secure_file.ts'), async (original) => {
  const real = await original()
  return {
    ...real,
    replaceSecretFileDurably: (path: string, data: string | Uint8Array) => disk.hang ? new Promise<void>(() => {}) : real.replaceSecretFileDurably(path, data),
  }
})

const t = await useCredentialsApp()

/** close()'s grace for the store (CLOSE_WRITE_GRACE_MS, docs/job-credentials.md): 5 s. */
const CLOSE_GRACE_MS = 5_000

it('returns when neither the store nor the disk answers, and logs that the held token is not on disk', { timeout: 40_000 }, async () => {
  expect((await t.register(await t.userToken({ preferred_username: 'kay', sub: 'kay-sub' }), { provider: 'cms' })).status).toBe(201)
  const lines: string[] = []
  const first = t.restartCredentials(createLogger((l) => lines.push(l)))
  const write = t.store.writeCredential.bind(t.store)
  // The store fails the rotation, then hangs; the disk hangs from the first save.
  let mode: 'refuse' | 'hang' = 'refuse'
  t.store.writeCredential = async (w: CredentialWrite, e) => {
    if (w.action === 'rotate' && w.user === 'kay') {
      if (mode === 'refuse') throw new Error('SQLITE_IOERR: disk I/O error')
      return new Promise<boolean>(() => {})
    }
    return write(w, e)
  }
  disk.hang = true
  try {
    void first.app.request('/v1/credentials/kay/cms/token', { headers: { authorization: `Bearer ${t.creddToken()}` } })
    for (let i = 0; i < 100 && first.credentials.unstoredRefreshTokens().memory === 0; i++) await new Promise((r) => setTimeout(r, 50))
    expect(first.credentials.unstoredRefreshTokens().memory).toBe(1)
    mode = 'hang'
    const started = Date.now()
    const closed = await Promise.race([
      first.credentials.close().then(() => true),
      new Promise<false>((r) => setTimeout(() => r(false), 3 * CLOSE_GRACE_MS + 5_000)),
    ])
    expect(closed).toBe(true)
    expect(Date.now() - started).toBeLessThan(3 * CLOSE_GRACE_MS)
    expect(lines.join('\n')).toMatch(/the disk did not finish keeping held/)
  } finally {
    disk.hang = false
    t.store.writeCredential = write
  }
})
