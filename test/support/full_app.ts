import { createHash } from 'node:crypto'
import type { Hono } from 'hono'
import { createApp, type AppDeps } from '../../src/app.ts'
import { bootstrapTokenAuthenticator } from '../../src/http/middleware/admin_auth.ts'
import { fixedClock } from '../../src/lib/clock.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { RevocationService } from '../../src/revocation/revocation_service.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'
import { TEST_NOW, testDeps } from './broker_deps.ts'

/** The bootstrap admin token fullApp accepts. */
export const FULL_APP_ADMIN = 'a'.repeat(43)

/**
 * The app with every optional part mounted: token exchange, admin API, policy explain, metrics, the pool CA,
 * the console and job credentials. For tests about routes and refusals at the edge: the services behind
 * the token exchange, the CA and credentials are not wired and throw when reached.
 */
export function fullApp(): Hono {
  const store = new MemoryStore()
  const revocations = new RevocationService({
    store, clock: fixedClock(TEST_NOW), log: silentLogger, maxTokenLifetime: 86400, refreshSeconds: 60,
    knownLabels: () => ({ roles: new Set(['pilot']), sites: new Set(['hpc-b']) }), knownIssuers: () => new Set(),
  })
  const admin: NonNullable<AppDeps['admin']> = {
    audit: store, revocations,
    authenticators: [bootstrapTokenAuthenticator(createHash('sha256').update(FULL_APP_ADMIN).digest())],
    policy: { current: {} as never },
  }
  return createApp(testDeps({ exchange: async () => { throw new Error('not called') }, admin, metrics: { page: async () => ({ contentType: 'text/plain; version=0.0.4; charset=utf-8', body: '' }), auth: 'none' },
    // Only the routes are enumerated here; no request reaches the CA.
    certificates: { service: {} as never, verifyCaller: async () => { throw new Error('not called') } },
    console: { keys: () => { throw new Error('not called') }, sessionSeconds: 3600, sessions: store },
    credentials: { service: {} as never, jobTokens: {} as never, credd: {} as never, close: async () => {}, unstoredRefreshTokens: () => ({ memory: 0, disk: 0 }) },
  }))
}
