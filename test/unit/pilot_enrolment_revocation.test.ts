// `pilot-enrolment` revocations (docs/pilots.md): one cluster's pilot group, named by its enrolment credential's
// jti, which every pilot token of the group carries as ctb_enrolment. A SLURM job id is unique within one SLURM
// cluster only, so two clusters with a pilot group at the same site share job ids: a pilot-job entry for one
// cuts off the other's; an enrolment entry does not.
import { describe, expect, it } from 'vitest'
import { silentLogger } from '../../src/lib/logger.ts'
import { buildRevocationExpression } from '../../src/revocation/condor_expression.ts'
import type { Revocation } from '../../src/revocation/revocation.ts'
import { RevocationSnapshot } from '../../src/revocation/revocation_checker.ts'
import { revocationDifferences } from '../../src/revocation/revocation_consistency.ts'
import { RevocationService } from '../../src/revocation/revocation_service.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'

const NOW = 1_800_000_000
// Two enrolments' ids: 32 lowercase hex characters, the shape of every jti the broker makes.
const E1 = '0123456789abcdef0123456789abcdef'
const E2 = 'fedcba9876543210fedcba9876543210'
const rev = (id: number, kind: Revocation['kind'], value: string): Revocation => ({ id, kind, value, revokedAt: NOW - 100, until: NOW + 3600 })
const pilotClaims = (enrolment: string) => ({
  jti: `${enrolment.slice(0, 16)}aaaaaaaaaaaaaaaa`, sub: `pilot+hpc+${enrolment}+42-n1@pilots.pool.example.org`, iat: NOW - 10,
  ctb_role: 'pilot', ctb_gen: 1, ctb_site: 'hpc', ctb_slurm_job: '42', ctb_enrolment: enrolment,
})

function service() {
  const store = new MemoryStore()
  const svc = new RevocationService({
    store, clock: { now: () => NOW }, log: silentLogger, maxTokenLifetime: 3600, refreshSeconds: 60,
    knownLabels: () => ({ roles: new Set(['pilot']), sites: new Set(['hpc']) }),
  })
  return { store, svc }
}

describe('pilot-enrolment revocations', () => {
  it('render as a meta-equals on ctb_enrolment, beside the other kinds', () => {
    const { expr, clauses } = buildRevocationExpression([rev(1, 'pilot-enrolment', E1), rev(2, 'jti', 'a0')], NOW)
    expect(expr).toBe(`jti =?= "a0" || ctb_enrolment =?= "${E1}"`)
    expect(clauses).toBe(2)
  })

  it('revoke the revoked enrolment\'s pilots only, not another enrolment\'s at the same site and job id', () => {
    const snap = new RevocationSnapshot([rev(1, 'pilot-enrolment', E1)], new Map(), NOW)
    expect(snap.isRevoked(pilotClaims(E1))).toBe(true)
    expect(snap.isRevoked(pilotClaims(E2))).toBe(false)
    expect(snap.countByKind(NOW).get('pilot-enrolment')).toBe(1)
  })

  it('are stored with an audit record naming the enrolment, checked against the chain, listed and lifted', async () => {
    const { store, svc } = service()
    const r = await svc.revoke({ kind: 'pilot-enrolment', value: E1, reason: 'teardown' }, { principal: 'admin' })
    expect(r).toMatchObject({ kind: 'pilot-enrolment', value: E1 })
    // Held until every token issued so far may have expired, as a pilot-job entry is: now plus the longest lifetime.
    expect(r.until).toBe(NOW + 3600)
    const rec = (await store.query({ type: 'token.revoked', limit: 1 })).records[0]!.event
    expect(rec.detail).toMatchObject({ pilotEnrolment: E1, revocation: { id: r.id, kind: 'pilot-enrolment', value: E1 } })
    expect(svc.isRevoked(pilotClaims(E1))).toBe(true)
    expect((await svc.list()).map((x) => x.kind)).toEqual(['pilot-enrolment'])
    const records = (await store.query({ limit: 100 })).records.slice().reverse()
    expect(revocationDifferences({ records, rows: await store.listRevocations(), generations: new Map() })).toEqual([])
    // A row whose value was edited is caught, as for every other kind.
    const edited = { ...(await store.listRevocations())[0]!, value: E2 }
    expect(revocationDifferences({ records, rows: [edited], generations: new Map() })).toEqual([
      `revocation ${r.id} (pilot-enrolment "${E1}") differs from its record at seq ${records[0]!.seq}: value "${E2}", recorded "${E1}" (edited)`,
    ])
    await svc.lift(r.id, { reason: 'wrong cluster' }, { principal: 'admin' })
    expect(svc.isRevoked(pilotClaims(E1))).toBe(false)
    const lift = (await store.query({ type: 'token.unrevoked', limit: 1 })).records[0]!.event
    expect(lift.detail).toMatchObject({ pilotEnrolment: E1, lift: { id: r.id } })
  })

  it('refuse a value that is not a jti (32 lowercase hex characters), storing nothing', async () => {
    const { svc } = service()
    for (const bad of ['hpc:42', E1.toUpperCase(), `${E1}0`, E1.slice(1), `${E1.slice(0, 31)}g`]) {
      await expect(svc.revoke({ kind: 'pilot-enrolment', value: bad }, { principal: 'admin' }), bad).rejects.toThrow(/pilot-enrolment must be an enrolment credential's jti \(32 lowercase hex characters\)/)
    }
    expect(await svc.list({ all: true })).toEqual([])
  })
})
