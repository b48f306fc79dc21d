import { expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/audit_log.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'

const T0 = 1_800_000_000
const revokedBy: AuditEvent = { type: 'token.revoked', time: T0 + 2, caller: { sub: 'admin' } }

// Every revocation record below the anchor is re-read and re-checked at each run (every anchor_interval
// while serving), and retention is off by default, so the list only grows: a pool that revokes each pilot
// job at teardown lists thousands. Checked in one synchronous loop, 20,000 held the event loop ~290 ms.
it('re-checks the records its anchor lists in slices, letting the event loop turn in between', async () => {
  const s = new MemoryStore()
  await Promise.all(Array.from({ length: 2000 }, (_, i) => s.revoke({ kind: 'jti', value: `j-${i}`, revokedAt: T0, until: T0 + 86400 }, revokedBy)))
  const anchorKey = Buffer.alloc(32, 7)
  expect(await s.verifyRevocations({ anchorKey })).toEqual({ ok: true, revocations: 2000 })
  let turns = 0
  let running = true
  const tick = () => { turns++; if (running) setImmediate(tick) }
  setImmediate(tick)
  const before = turns
  expect(await s.verifyRevocations({ anchorKey })).toEqual({ ok: true, revocations: 2000 })
  running = false
  // At least one turn per 500 records listed, after the first 500.
  expect(turns - before).toBeGreaterThanOrEqual(3)
})
