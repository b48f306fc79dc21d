// Who may read GET /metrics (metrics.auth): open by default, one bearer token, or the admin API's
// authentication; and not mounted at all when metrics are off.
import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { createApp, type AppDeps } from '../../src/app.ts'
import { bootstrapTokenAuthenticator } from '../../src/http/middleware/admin_auth.ts'
import { fixedClock } from '../../src/lib/clock.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { BrokerMetrics } from '../../src/metrics/broker_metrics.ts'
import type { PolicyContext } from '../../src/policy/compile.ts'
import { loadPolicies } from '../../src/policy/load.ts'
import { RevocationService } from '../../src/revocation/revocation_service.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'
import { TEST_NOW, testDeps } from '../support/broker_deps.ts'

const CTX: PolicyContext = { trustDomain: 'pool.example.org', uidDomain: 'users.example.org', vars: { IAM_ISSUER: 'https://iam.example.org/' }, scitokenProfile: 'wlcg', maxLifetime: {} }
const policy = loadPolicies('policies', CTX)
const METRICS_TOKEN = 'm'.repeat(43)
const ADMIN_TOKEN = 'a'.repeat(43)
const sha256 = (s: string) => createHash('sha256').update(s).digest()

function app(auth: NonNullable<AppDeps['metrics']>['auth'] | undefined) {
  const metrics = new BrokerMetrics({ clock: fixedClock(TEST_NOW), policy: () => policy, process: false })
  const store = new MemoryStore()
  const revocations = new RevocationService({
    store, clock: fixedClock(TEST_NOW), log: silentLogger, maxTokenLifetime: 86400, refreshSeconds: 60,
    knownLabels: () => ({ roles: new Set(), sites: new Set() }),
  })
  return createApp(testDeps({
    admin: { audit: store, revocations, authenticators: [bootstrapTokenAuthenticator(sha256(ADMIN_TOKEN))] },
    ...(auth ? { metrics: { page: () => metrics.render(), auth } } : {}),
  }))
}

const scrape = (a: ReturnType<typeof app>, token?: string) =>
  a.request('/metrics', token ? { headers: { authorization: `Bearer ${token}` } } : {})

describe('GET /metrics access', () => {
  it('is open with auth "none"', async () => {
    const res = await scrape(app('none'))
    expect(res.status).toBe(200)
    expect(await res.text()).toContain('# TYPE ctb_tokens_issued_total counter')
  })

  it('takes the bearer token, and only it, with auth "bearer"', async () => {
    const a = app({ bearerSha256: sha256(METRICS_TOKEN) })
    const none = await scrape(a)
    expect(none.status).toBe(401)
    // Its own realm (docs/metrics.md): the scrape token is no admin token, and the challenge must not ask for one.
    expect(none.headers.get('www-authenticate')).toBe('Bearer realm="condor-token-broker metrics"')
    expect(await none.json()).toMatchObject({ error: 'invalid_token' })
    expect((await scrape(a, ADMIN_TOKEN)).status).toBe(401)
    const ok = await scrape(a, METRICS_TOKEN)
    expect(ok.status).toBe(200)
    expect(await ok.text()).toContain('ctb_tokens_denied_total')
  })

  it('takes an admin token, and not another, with auth "admin"', async () => {
    const a = app('admin')
    const none = await scrape(a)
    expect(none.status).toBe(401)
    expect(none.headers.get('www-authenticate')).toBe('Bearer realm="condor-token-broker admin"')
    expect((await scrape(a, METRICS_TOKEN)).status).toBe(401)
    expect((await scrape(a, ADMIN_TOKEN)).status).toBe(200)
  })

  it('is not there when metrics are off', async () => {
    const res = await scrape(app(undefined))
    expect(res.status).toBe(404)
    expect(await res.json()).toMatchObject({ error: 'invalid_request' })
  })
})
