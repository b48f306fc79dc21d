import { expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/audit_log.ts'
import type { RevocationState } from '../../src/storage/chain_source.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'

// The periodic anchored check and retention run in the same process (their timers fire together every
// prune_interval), and on PostgreSQL another replica prunes whenever its own timer fires. A prune that
// commits after the check read the log's extent, and before it re-read the records it lists, is no tampering.
const T0 = 1_800_000_000
const issued = (i: number, time = T0 + i): AuditEvent => ({ type: 'token.issued', time, jti: `j-${i}`, caller: { sub: 'alice' }, decision: 'allow' })
const revokedBy: AuditEvent = { type: 'token.revoked', time: T0 + 2, caller: { sub: 'admin' } }

/** A store in which one prune (at `before`) commits right after the check reads its state, as a racing timer's would. */
class PrunedMeanwhile extends MemoryStore {
  pruneAt: number | undefined
  protected override async readRevocationState(): Promise<RevocationState> {
    const state = await super.readRevocationState()
    const before = this.pruneAt
    this.pruneAt = undefined
    if (before !== undefined) expect(await this.prune(before, T0 + 500)).toMatchObject({ pruned: 3 })
    return state
  }
}

async function logWithRevocation(): Promise<PrunedMeanwhile> {
  const s = new PrunedMeanwhile()
  await s.record(issued(1))
  await s.revoke({ kind: 'site', value: 'SITE_A', revokedAt: T0 + 2, until: T0 + 10 * 86400 }, revokedBy)
  await s.record(issued(3))
  for (let i = 4; i <= 6; i++) await s.record(issued(i, T0 + 200 + i))
  return s
}

it('a prune committing during the anchored check is not reported as tampering', async () => {
  const s = await logWithRevocation()
  const anchorKey = Buffer.alloc(32, 7)
  expect(await s.verifyRevocations({ anchorKey })).toEqual({ ok: true, revocations: 1 })
  await s.record(issued(7, T0 + 300))
  s.pruneAt = T0 + 100
  expect(await s.verifyRevocations({ anchorKey })).toEqual({ ok: true, revocations: 1 })
})

it('a prune committing during a full check is not reported as tampering', async () => {
  const s = await logWithRevocation()
  s.pruneAt = T0 + 100
  expect(await s.verifyRevocations({ anchorKey: Buffer.alloc(32, 7) })).toEqual({ ok: true, revocations: 1 })
})

it('still names a prefix deleted by hand, with no prune racing', async () => {
  const s = await logWithRevocation()
  const anchorKey = Buffer.alloc(32, 7)
  expect(await s.verifyRevocations({ anchorKey })).toEqual({ ok: true, revocations: 1 })
  s.rawRows().splice(0, 3)
  expect(await s.verifyRevocations({ anchorKey })).toMatchObject({ ok: false, unverified: 'audit chain broken at seq 4: records before seq 4 are missing and no checkpoint vouches for their removal' })
})
