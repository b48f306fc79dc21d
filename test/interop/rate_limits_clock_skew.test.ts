import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { loadConfig } from '../../src/config.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { openRequestLimits, type OpenedRequestLimits } from '../../src/ratelimit/open_request_limits.ts'
import { startPostgres, type TestPostgres } from '../support/postgres.ts'

// Two replicas' caller limits on one real PostgreSQL server (Debian package `postgresql`), one replica's
// clock two hours ahead of the other's. A limit of 2 per hour is 2 per hour of the database's time: the
// replica whose clock runs ahead must not take the shared window for over and start a fresh one.
const caller = { iss: 'https://iam.example.org/', sub: 'skewed-caller' }

let server: TestPostgres
let a: OpenedRequestLimits
let b: OpenedRequestLimits
beforeAll(async () => {
  server = await startPostgres()
  const dsn = await server.createDatabase('ratelimit_clock_skew')
  const env = { CTB_AUDIT_STORE: 'postgres', CTB_AUDIT_POSTGRES_DSN: dsn, CTB_RATE_LIMITS_CALLER_REQUESTS: '2', CTB_RATE_LIMITS_CALLER_PER: '1h' }
  a = await openRequestLimits(loadConfig({ env }), { log: silentLogger })
  b = await openRequestLimits(loadConfig({ env }), { log: silentLogger })
})
afterAll(async () => {
  vi.restoreAllMocks()
  await a?.close()
  await b?.close()
  await server?.stop()
})

describe('caller limits on PostgreSQL with replica clocks that disagree', () => {
  it('refuses at a replica whose clock is two hours ahead once the shared window is used up', async () => {
    expect(a.store).toBe('postgres')
    expect(await a.limits.admit(caller, undefined)).toBeUndefined()
    expect(await a.limits.admit(caller, undefined)).toBeUndefined()
    expect((await a.limits.admit(caller, undefined))?.limit).toBe('caller')

    const realNow = Date.now.bind(Date)
    vi.spyOn(Date, 'now').mockImplementation(() => realNow() + 2 * 3600_000)
    const refused = await b.limits.admit(caller, undefined)
    expect(refused?.limit).toBe('caller')
    // Retry-After counts what is left of the database's hour, not of the skewed clock's.
    expect(refused!.retryAfter).toBeGreaterThan(3500)
    expect(refused!.retryAfter).toBeLessThanOrEqual(3600)
  })
})
