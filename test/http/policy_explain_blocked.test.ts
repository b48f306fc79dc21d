// POST /admin/policy/explain must say what the token endpoint would do for a caller a `sub` or `client`
// revocation blocks: POST /token refuses such a caller (unauthorized_client) before the policy is asked, for a
// token and for a pilot enrolment alike (exchange.ts, pilot_exchange.ts), so an explanation that only asked
// the policy answered "allow" for a request that is refused, and `provision plan` planned enrolments that fail.
import { createHash } from 'node:crypto'
import { beforeEach, describe, expect, it } from 'vitest'
import { createApp } from '../../src/app.ts'
import { bootstrapTokenAuthenticator } from '../../src/http/middleware/admin_auth.ts'
import { fixedClock } from '../../src/lib/clock.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import type { PolicyContext } from '../../src/policy/compile.ts'
import { loadPolicies } from '../../src/policy/load.ts'
import { RevocationService } from '../../src/revocation/revocation_service.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'
import { testDeps } from '../support/broker_deps.ts'

const ISS = 'https://iam.example.org/'
const OTHER_ISS = 'https://iam.other.example.org/'
const BOOT = 'd'.repeat(43)
const NOW = 1795557188
const CTX: PolicyContext = { trustDomain: 'pool.example.org', uidDomain: 'users.example.org', vars: { IAM_ISSUER: ISS }, scitokenProfile: 'wlcg', maxLifetime: {} }
// policies/20-hpc-slurm.yaml: rule hpc-b-pilots grants this client pilot enrolments for hpc-b (max_count 256).
const FACTORY = { iss: ISS, sub: 'svc', client_id: 'ctb-hpc-b-pilot-factory' }
const ENROLMENT = { subject: FACTORY, role: 'pilot', params: { site: 'hpc-b' }, pilot_enrolment: { pilot_count: 4, lifetime: 3600 } }
// policies: rule cloud-a-execute-points issues startd IDTOKENs to this client.
const PROVISIONER = { iss: ISS, sub: 'svc-a', client_id: 'ctb-cloud-a-provisioner' }
const STARTD = { subject: PROVISIONER, role: 'startd', host: 'ep-3.cloud-a.example.org' }

let revocations: RevocationService
let app: ReturnType<typeof createApp>

beforeEach(() => {
  const store = new MemoryStore()
  revocations = new RevocationService({
    store, clock: fixedClock(NOW), log: silentLogger, maxTokenLifetime: 86400, refreshSeconds: 60,
    knownLabels: () => ({ roles: new Set(['pilot', 'startd']), sites: new Set(['hpc-b', 'cloud-a']) }),
    knownIssuers: () => new Set([ISS, OTHER_ISS]),
  })
  app = createApp(testDeps({
    admin: {
      audit: store, revocations, authenticators: [bootstrapTokenAuthenticator(createHash('sha256').update(BOOT).digest())],
      policy: { current: loadPolicies('policies', CTX) },
    },
  }))
})

async function explain(body: unknown): Promise<{ decision: Record<string, unknown>; limits?: unknown; rules: { decisive: boolean }[] }> {
  const res = await app.request('/admin/policy/explain', {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${BOOT}` }, body: JSON.stringify(body),
  })
  expect(res.status).toBe(200)
  return await res.json() as { decision: Record<string, unknown>; limits?: unknown; rules: { decisive: boolean }[] }
}

const cli = { principal: 'cli:root' }

describe('policy explain for a caller a revocation blocks', () => {
  it('allows the enrolment and the token while nothing blocks the caller (the control)', async () => {
    expect((await explain(ENROLMENT)).decision).toMatchObject({ allow: true, ruleId: 'hpc-b-pilots' })
    expect((await explain(STARTD)).decision).toMatchObject({ allow: true, ruleId: 'cloud-a-execute-points' })
  })

  it('denies a pilot enrolment of a caller revoked by sub, naming the revocation, without the grant\'s limits', async () => {
    const rev = await revocations.revoke({ kind: 'sub', value: 'svc' }, cli)
    expect(revocations.blockedCaller(FACTORY)).toBe('this caller has been revoked')
    const j = await explain(ENROLMENT)
    expect(j.decision).toEqual({ allow: false, error: 'unauthorized_client', reason: `caller svc is blocked by revocation ${rev.id} (sub "svc" at every trusted issuer): this caller has been revoked` })
    expect(j.limits).toBeUndefined()
  })

  it('denies a pilot enrolment of a caller whose client is revoked at its issuer', async () => {
    const rev = await revocations.revoke({ kind: 'client', value: 'ctb-hpc-b-pilot-factory', iss: ISS }, cli)
    expect(revocations.blockedCaller(FACTORY)).toBe('client ctb-hpc-b-pilot-factory has been revoked')
    expect((await explain(ENROLMENT)).decision).toEqual({
      allow: false, error: 'unauthorized_client',
      reason: `caller svc is blocked by revocation ${rev.id} (client "ctb-hpc-b-pilot-factory" at ${ISS}): client ctb-hpc-b-pilot-factory has been revoked`,
    })
  })

  it('denies a token to a blocked caller too, with no rule decisive', async () => {
    const rev = await revocations.revoke({ kind: 'client', value: 'ctb-cloud-a-provisioner' }, cli)
    const j = await explain(STARTD)
    expect(j.decision).toEqual({
      allow: false, error: 'unauthorized_client',
      reason: `caller svc-a is blocked by revocation ${rev.id} (client "ctb-cloud-a-provisioner" at every trusted issuer): client ctb-cloud-a-provisioner has been revoked`,
    })
    expect(j.rules.some((r) => r.decisive)).toBe(false)
  })

  it('is not blocked where the token endpoint is not: another issuer\'s account of that name, or a lifted entry', async () => {
    await revocations.revoke({ kind: 'sub', value: 'svc', iss: OTHER_ISS }, cli)
    expect(revocations.blockedCaller(FACTORY)).toBeUndefined()
    expect((await explain(ENROLMENT)).decision).toMatchObject({ allow: true })
    const rev = await revocations.revoke({ kind: 'sub', value: 'svc' }, cli)
    expect((await explain(ENROLMENT)).decision).toMatchObject({ allow: false })
    await revocations.lift(rev.id, {}, cli)
    expect(revocations.blockedCaller(FACTORY)).toBeUndefined()
    expect((await explain(ENROLMENT)).decision).toMatchObject({ allow: true })
  })

  // After the policy allows, POST /token refuses the token when an active `sub` entry names the identity the
  // rule would issue (exchange.ts: unauthorized_client, the deciding rule on record); explain answered allow.
  it('denies a token whose issued identity a sub revocation names, as the token endpoint does', async () => {
    // policies/10-cloud-htc.yaml: cloud-a-execute-points issues startd-cloud-a-{host_short}@eps.{trust_domain}.
    await revocations.revoke({ kind: 'sub', value: 'startd-cloud-a-ep-3@eps.pool.example.org' }, cli)
    expect((await explain(STARTD)).decision).toEqual({
      allow: false, error: 'unauthorized_client', ruleId: 'cloud-a-execute-points',
      reason: 'identity startd-cloud-a-ep-3@eps.pool.example.org has been revoked',
    })
    expect((await explain({ ...STARTD, host: 'ep-4.cloud-a.example.org' })).decision).toMatchObject({ allow: true })
  })
})
