// ctb_revocations_active is served from the revocations the broker enforces in memory, so a scrape never
// waits on the audit store: not when it refuses, not when it stops answering (a frozen PostgreSQL server
// would hold the scrape, and a pool connection, for query_timeout_seconds).
import { describe, expect, it } from 'vitest'
import { silentLogger } from '../../src/lib/logger.ts'
import { BrokerMetrics } from '../../src/metrics/broker_metrics.ts'
import type { PolicyContext } from '../../src/policy/compile.ts'
import { loadPolicies } from '../../src/policy/load.ts'
import type { Revocation } from '../../src/revocation/revocation.ts'
import { RevocationService } from '../../src/revocation/revocation_service.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'
import { parsePrometheusText, sampleValue } from '../support/prometheus_text.ts'

const CTX: PolicyContext = { trustDomain: 'pool.example.org', uidDomain: 'users.example.org', vars: { IAM_ISSUER: 'https://iam.example.org/' }, scitokenProfile: 'wlcg', maxLifetime: {} }
const policy = loadPolicies('policies', CTX)
const NOW = 1_800_000_000
const ADMIN = { principal: 'admin' }
// The seven kinds docs/metrics.md lists for the gauge, each with a sample on every scrape.
const KINDS = ['jti', 'sub', 'role', 'site', 'client', 'pilot-job', 'pilot-enrolment']

/** A store whose revocation reads can be made to fail or never answer, and that counts them. */
class OutageStore extends MemoryStore {
  mode: 'up' | 'refusing' | 'frozen' = 'up'
  reads = 0
  override listRevocations(options?: { activeAt?: number }): Promise<Revocation[]> {
    this.reads++
    if (this.mode === 'refusing') return Promise.reject(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }))
    if (this.mode === 'frozen') return new Promise(() => {})
    return super.listRevocations(options)
  }
}

function setup() {
  let now = NOW
  const clock = { now: () => now }
  const store = new OutageStore()
  const service = new RevocationService({
    store, clock, log: silentLogger, maxTokenLifetime: 3600, refreshSeconds: 60,
    knownLabels: () => ({ roles: new Set(['pilot']), sites: new Set(['cloud-a', 'cloud-b']) }),
  })
  const metrics = new BrokerMetrics({ clock, policy: () => policy, process: false, sources: { revocations: () => service.inForce() } })
  const gauge = async () => {
    const s = parsePrometheusText((await metrics.render()).body)
    return Object.fromEntries(KINDS.map((kind) => [kind, sampleValue(s, 'ctb_revocations_active', { kind })]))
  }
  return { store, service, metrics, gauge, clock, advance: (s: number) => { now += s } }
}

const zero = Object.fromEntries(KINDS.map((k) => [k, 0]))

describe('ctb_revocations_active', () => {
  it('follows revoke and lift', async () => {
    const { service, gauge } = setup()
    await service.refresh()
    expect(await gauge()).toEqual(zero)
    const a = await service.revoke({ kind: 'jti', value: 'token-1' }, ADMIN)
    await service.revoke({ kind: 'jti', value: 'token-2' }, ADMIN)
    await service.revoke({ kind: 'site', value: 'cloud-a' }, ADMIN)
    await service.revoke({ kind: 'sub', value: 'alice' }, ADMIN)
    await service.revoke({ kind: 'pilot-job', value: 'cloud-b:4711' }, ADMIN)
    expect(await gauge()).toEqual({ ...zero, jti: 2, site: 1, sub: 1, 'pilot-job': 1 })
    await service.lift(a.id, {}, ADMIN)
    expect(await gauge()).toEqual({ ...zero, jti: 1, site: 1, sub: 1, 'pilot-job': 1 })
  })

  it('drops an entry once its until has passed, without a store read', async () => {
    const { store, service, gauge, advance } = setup()
    const r = await service.revoke({ kind: 'jti', value: 'token-1' }, ADMIN)
    store.mode = 'frozen'
    // until is inclusive (inForce): one second past it, the entry matches nothing valid.
    advance(r.until - NOW)
    expect((await gauge()).jti).toBe(1)
    advance(1)
    expect((await gauge()).jti).toBe(0)
  })

  it.each(['refusing', 'frozen'] as const)('reports what the broker enforces while the store is %s, and reads no store at scrape time', async (mode) => {
    const { store, service, gauge } = setup()
    await service.revoke({ kind: 'jti', value: 'token-1' }, ADMIN)
    await service.revoke({ kind: 'client', value: 'robot-client' }, ADMIN)
    store.mode = mode
    const reads = store.reads
    const started = performance.now()
    expect(await gauge()).toEqual({ ...zero, jti: 1, client: 1 })
    expect(store.reads).toBe(reads)
    // No bound waited out: the answer is at once.
    expect(performance.now() - started).toBeLessThan(500)
  })

  it('picks up a revocation made by another replica at its next refresh', async () => {
    // Two brokers on one store: the second's revocation reaches the first's gauge when the first re-reads
    // the table (every revocation.refresh_seconds), not before.
    const { store, service, gauge, clock } = setup()
    await service.refresh()
    const other = new RevocationService({
      store, clock, log: silentLogger, maxTokenLifetime: 3600, refreshSeconds: 60,
      knownLabels: () => ({ roles: new Set(['pilot']), sites: new Set(['cloud-a']) }),
    })
    await other.revoke({ kind: 'site', value: 'cloud-a' }, ADMIN)
    expect((await gauge()).site).toBe(0)
    await service.refresh()
    expect((await gauge()).site).toBe(1)
  })

  it('says how old the list it reports is', async () => {
    const { store, service, metrics, advance } = setup()
    await service.refresh()
    store.mode = 'refusing'
    advance(42)
    await expect(service.refresh()).rejects.toThrow()
    const s = parsePrometheusText((await metrics.render()).body)
    expect(sampleValue(s, 'ctb_revocations_read_age_seconds')).toBe(42)
  })
})
