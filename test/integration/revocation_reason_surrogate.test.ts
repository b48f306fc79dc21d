import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
import { RevocationService } from '../../src/revocation/revocation_service.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { tempDir } from '../support/tmp.ts'

// A JSON body may carry "\ud800", a UTF-16 surrogate with no partner; JSON.parse gives it to the service as it
// is. The audit record keeps it (JSON writes it as that escape), but a text column of SQLite or PostgreSQL holds
// UTF-8, which cannot encode it, and stores U+FFFD instead. The check then found the row's reason different from
// its record and called it edited: audit verify failed and the broker refused to start, over a reason it had
// accepted itself. Such a reason is refused up front, like one with control characters.
describe('a revocation reason that is not well-formed UTF-16', () => {
  it('is refused, so no row departs from its record', async () => {
    const store = new SqliteStore({ file: join(tempDir(), 'audit.db') })
    const now = 1_800_000_000
    const service = new RevocationService({
      store, clock: { now: () => now }, log: silentLogger, maxTokenLifetime: 86_400, refreshSeconds: 60,
      knownLabels: () => ({ roles: new Set(), sites: new Set() }),
    })
    try {
      await expect(service.revoke({ kind: 'client', value: 'factory-x', reason: 'stolen \ud800 key' }, { principal: 'http:admin' }))
        .rejects.toThrow('reason must be at most 500 characters of well-formed text without control characters')
      const rev = await service.revoke({ kind: 'client', value: 'factory-x', reason: 'stolen key' }, { principal: 'http:admin' })
      await expect(service.lift(rev.id, { reason: 'found \udc00 again' }, { principal: 'http:admin' }))
        .rejects.toThrow('reason must be at most 500 characters of well-formed text without control characters')
      expect(await store.verifyRevocations()).toEqual({ ok: true, revocations: 1 })
    } finally {
      await store.close()
    }
  })
})
