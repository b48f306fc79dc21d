// A revocation or lift commits (its row and its audit record, one transaction), then the service re-reads the
// active revocations. That read can fail as an outage on its own (an SQLite lock, a PostgreSQL read cut off).
// The change stands all the same: the caller must be told it was made (a 503 "nothing was changed" invites a
// retry that revokes twice, or a lift retried into "already lifted"), and this broker must enforce it at once,
// not after its next periodic refresh. The refresh that then succeeds must neither cry tampering at what was
// applied from memory nor stop reporting a row really changed behind the broker.
import { expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/audit_log.ts'
import { AuditStoreUnavailable } from '../../src/errors.ts'
import type { Logger } from '../../src/lib/logger.ts'
import { CLAIM_GENERATION, CLAIM_ROLE, type NewRevocation, type Revocation, type RevocationLift } from '../../src/revocation/revocation.ts'
import { RevocationService } from '../../src/revocation/revocation_service.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'

const NOW = 1_800_000_000

/** A store whose reads of revocations fail as an outage from the moment a revocation or lift has committed. */
class ReadsFailAfterCommit extends MemoryStore {
  failing = false
  readonly #outage = () => Promise.reject(new AuditStoreUnavailable(new Error('database is locked'), 'read'))
  override async revoke(rev: NewRevocation, event: AuditEvent): Promise<Revocation> {
    const done = await super.revoke(rev, event)
    this.failing = true
    return done
  }
  override async lift(lift: RevocationLift, event: AuditEvent): Promise<Revocation | undefined> {
    const done = await super.lift(lift, event)
    this.failing = true
    return done
  }
  override listRevocations(options?: { activeAt?: number }): Promise<Revocation[]> {
    return this.failing ? this.#outage() : super.listRevocations(options)
  }
  override roleGenerations(): Promise<Map<string, number>> {
    return this.failing ? this.#outage() : super.roleGenerations()
  }
}

function running() {
  const store = new ReadsFailAfterCommit()
  const errors: string[] = []
  const warnings: string[] = []
  const log: Logger = {
    info() {},
    warn(msg, fields) { warnings.push(`${msg} ${JSON.stringify(fields)}`) },
    error(msg, fields) { errors.push(`${msg} ${JSON.stringify(fields)}`) },
  }
  const svc = new RevocationService({
    store, clock: { now: () => NOW }, log, maxTokenLifetime: 86400, refreshSeconds: 60,
    knownLabels: () => ({ roles: new Set(['pilot']), sites: new Set(['cloud-a']) }),
  })
  return { store, svc, errors, warnings }
}

it('a revocation whose refresh fails after the commit is answered as made, enforced at once, and logged', async () => {
  const { store, svc, errors, warnings } = running()
  await svc.refresh()
  const rev = await svc.revoke({ kind: 'jti', value: 'j-1', exp: NOW + 600 }, { principal: 'admin' })
  expect(rev).toMatchObject({ kind: 'jti', value: 'j-1', until: NOW + 600 })
  expect(svc.isRevoked({ jti: 'j-1', iat: NOW - 10 })).toBe(true)
  expect(svc.inForce().byKind.get('jti')).toBe(1)
  expect(warnings.join('\n')).toContain(`revocation ${rev.id}`)
  // The store answers again: the entry is in the table as applied, nothing to report, still enforced.
  store.failing = false
  await svc.refresh()
  expect(svc.isRevoked({ jti: 'j-1', iat: NOW - 10 })).toBe(true)
  expect(errors).toEqual([])
  expect((await store.listRevocations()).filter((r) => r.value === 'j-1')).toHaveLength(1)
})

it('a role revocation whose refresh fails after the commit raises the generation new tokens carry at once', async () => {
  const { store, svc, errors } = running()
  await svc.refresh()
  expect(svc.generationOf('pilot')).toBe(1)
  const rev = await svc.revoke({ kind: 'role', value: 'pilot' }, { principal: 'admin' })
  // docs/revocation.md: a role revocation raises the role's generation by one (from 1, the initial one, to 2).
  expect(rev.gen).toBe(2)
  expect(svc.generationOf('pilot')).toBe(2)
  expect(svc.isRevoked({ sub: 'p', iat: NOW - 10, [CLAIM_ROLE]: 'pilot', [CLAIM_GENERATION]: 1 })).toBe(true)
  store.failing = false
  await svc.refresh()
  expect(svc.generationOf('pilot')).toBe(2)
  expect(errors).toEqual([])
})

it('a lift whose refresh fails after the commit is answered as made and stops being enforced at once', async () => {
  const { store, svc, errors, warnings } = running()
  const rev = await svc.revoke({ kind: 'site', value: 'cloud-a' }, { principal: 'admin' })
  const token = { sub: 'startd@ep.example.org', iat: NOW - 10, ctb_site: 'cloud-a' }
  expect(svc.isRevoked(token)).toBe(true)
  store.failing = false
  const lifted = await svc.lift(rev.id, { reason: 'restored' }, { principal: 'admin' })
  expect(lifted).toMatchObject({ id: rev.id, liftedAt: NOW, liftedBy: 'admin' })
  expect(svc.isRevoked(token)).toBe(false)
  expect(svc.inForce().byKind.get('site')).toBe(0)
  expect(warnings.join('\n')).toContain(`revocation ${rev.id}`)
  store.failing = false
  await svc.refresh()
  expect(svc.isRevoked(token)).toBe(false)
  expect(errors).toEqual([])
})

it('a row deleted behind the broker after a revocation applied from memory is still reported and enforced', async () => {
  const { store, svc, errors } = running()
  await svc.refresh()
  const rev = await svc.revoke({ kind: 'site', value: 'cloud-a' }, { principal: 'admin' })
  store.failing = false
  const { revocations } = store.rawRevocations()
  revocations.splice(revocations.findIndex((r) => r.id === rev.id), 1)
  await svc.refresh()
  expect(svc.isRevoked({ sub: 's', iat: NOW - 10, ctb_site: 'cloud-a' })).toBe(true)
  expect(errors).toHaveLength(1)
  expect(errors[0]).toContain(`revocation ${rev.id} (site \\"cloud-a\\") is gone from the table`)
})
