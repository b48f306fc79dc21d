// A serving SQLite store refuses its reads for a moment after one waited out another process's lock
// (SERVING_READ_LOCK_BACKOFF_MS): another read then would most likely wait as long. But the writer thread
// waits out such a lock too (5 s, off the event loop), and commits the moment it is gone: a commit proves the
// file answers again. A revocation queued behind the lock committed, then the refresh that follows it was
// refused for the rest of the pause: the admin was told 503, "nothing was issued or changed", for a
// revocation that stood (a retry revokes twice), and this broker did not enforce it until its next refresh.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, expect, it } from 'vitest'
import { AuditStoreUnavailable } from '../../src/errors.ts'
import { fixedClock } from '../../src/lib/clock.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { RevocationService } from '../../src/revocation/revocation_service.ts'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
import { holdWalRecovery } from '../support/sqlite_recovery_lock.ts'

const dir = mkdtempSync(join(tmpdir(), 'ctb-lockcommit-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const T0 = 1_700_000_000

it('a revocation that commits once a lock is gone is answered as made and enforced, though a read met the lock just before', async () => {
  const file = join(dir, 'audit.db')
  // As serve opens it: the writer thread, the default busy timeouts.
  const store = new SqliteStore({ file })
  const service = new RevocationService({
    store, clock: fixedClock(T0), log: silentLogger, maxTokenLifetime: 86400, refreshSeconds: 60,
    knownLabels: () => ({ roles: new Set(['monitoring']), sites: new Set(['east']) }),
  })
  try {
    await store.record({ type: 'token.issued', time: T0, jti: 'j-1', role: 'monitoring', site: 'east' })
    await service.refresh()
    const lock = await holdWalRecovery(file)
    let revoking: Promise<unknown>
    try {
      // Queued behind the lock: the writer thread waits for it.
      revoking = service.revoke({ kind: 'site', value: 'east', reason: 'compromised' }, { principal: 'admin' }).then((r) => r, (e: unknown) => e)
      // A request's read meets the lock and gives up: the pause begins.
      expect(await store.readCredential('ada', 'cms').then(() => undefined, (e: unknown) => e)).toBeInstanceOf(AuditStoreUnavailable)
    } finally {
      await lock.release()
    }
    // The lock gone well within the pause (about 0.3 s into 1 s), the revocation commits and is read back.
    const rev = await revoking
    expect(rev).not.toBeInstanceOf(Error)
    expect(rev).toMatchObject({ kind: 'site', value: 'east' })
    expect(service.inForce().byKind.get('site')).toBe(1)
  } finally {
    await store.close()
  }
}, 30_000)
