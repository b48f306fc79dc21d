import { expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/audit_log.ts'
import { auditMacKey } from '../../src/audit/record_mac.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'

const T0 = 1_800_000_000
const issued = (i: number): AuditEvent => ({ type: 'token.issued', time: T0 + i, jti: `j-${i}`, caller: { sub: `user-${i % 50}` }, issuedSub: `pilot-${i % 7}@pilots.example.org`, role: 'pilot', decision: 'allow', scopes: ['condor:/READ', 'condor:/ADVERTISE_STARTD'] })

/** This thread's CPU time in ms: unlike wall time, it does not count the time the thread was descheduled. */
const cpuMs = () => { const u = process.threadCpuUsage(); return (u.user + u.system) / 1000 }

// The periodic check re-verifies every record appended since the last anchor on the event loop (parse,
// canonical form, SHA-256, MAC, columns): at 5,000 tokens/s one anchor_interval is 3,000,000 records. How
// often the loop turns must not depend on how a backend pages its rows: MemoryStore yields its whole log
// without a turn, as PostgreSQL's 5,000-row chunks once did, so here the check's own slicing is all there is.
it('turns the event loop every few milliseconds while it re-verifies a long run of new records', async () => {
  const s = new MemoryStore({ auditMac: auditMacKey(Buffer.alloc(32, 9)) })
  const anchorKey = Buffer.alloc(32, 7)
  expect(await s.verifyRevocations({ anchorKey })).toEqual({ ok: true, revocations: 0 })
  for (let i = 0; i < 20_000; i += 1000) await Promise.all(Array.from({ length: 1000 }, (_, k) => s.record(issued(i + k))))
  // The longest stretch of main-thread CPU between two turns. CPU, not wall time: on a shared machine the
  // thread is also descheduled for tens of milliseconds, which says nothing of how long the check holds it.
  let longest = 0
  let running = true
  const began = cpuMs()
  let last = began
  const tick = () => {
    const now = cpuMs()
    longest = Math.max(longest, now - last)
    last = now
    if (running) setImmediate(tick)
  }
  setImmediate(tick)
  expect(await s.verifyRevocations({ anchorKey })).toEqual({ ok: true, revocations: 0 })
  const ended = cpuMs()
  running = false
  // The stretch from the last turn to the check's end counts too (with no turn at all, it is the whole check).
  longest = Math.max(longest, ended - last)
  // 20,000 records take ~150-400 ms of CPU to verify here, so one stretch over 50 ms means the check held the
  // loop for many slices at once; a slice is 4 ms (CHECK_SLICE_MS), the bound leaves room for a garbage
  // collection on the main thread.
  expect(ended - began).toBeGreaterThan(100)
  expect(longest).toBeLessThan(50)
})
