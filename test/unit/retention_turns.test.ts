import { expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/audit_log.ts'
import { auditMacKey } from '../../src/audit/record_mac.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'

const T0 = 1_800_000_000
const issued = (i: number): AuditEvent => ({ type: 'token.issued', time: T0 + i, jti: `j-${i}`, caller: { sub: `user-${i % 50}` }, issuedSub: `pilot-${i % 7}@pilots.example.org`, role: 'pilot', decision: 'allow', scopes: ['condor:/READ', 'condor:/ADVERTISE_STARTD'] })

/** This thread's CPU time in ms: unlike wall time, it does not count the time the thread was descheduled. */
const cpuMs = () => { const u = process.threadCpuUsage(); return (u.user + u.system) / 1000 }

// Retention runs while serving (services.ts starts it with the server), and before it deletes anything it
// re-verifies every record it is about to prune on the event loop (prune_range.ts): the first prune after
// retention_days is turned on covers millions. As for the periodic check, how often the loop turns must not
// depend on how a backend pages its rows: MemoryStore yields its whole log without a turn.
it('turns the event loop every few milliseconds while it verifies the records it is about to prune', async () => {
  const s = new MemoryStore({ auditMac: auditMacKey(Buffer.alloc(32, 9)) })
  for (let i = 0; i < 20_000; i += 1000) await Promise.all(Array.from({ length: 1000 }, (_, k) => s.record(issued(i + k))))
  await s.record(issued(30_000))
  // Seq 1 is the statement that MACs begin (the store holds a key), so 20,001 records are older than the cut-off.
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
  // Every record but the last is older than the cut-off: 20,001 records, 5 chunks of at most PRUNE_CHUNK (5,000).
  expect(await s.prune(T0 + 25_000, T0 + 40_000)).toMatchObject({ pruned: 20_001, chunks: 5 })
  const ended = cpuMs()
  running = false
  // The stretch from the last turn to the prune's end counts too (with no turn at all, it is the whole prune).
  longest = Math.max(longest, ended - last)
  // 20,000 records take ~150-400 ms of CPU to verify here; a slice is 4 ms (CHECK_SLICE_MS), and the bound
  // leaves room for a garbage collection and for one chunk's delete transaction on the main thread.
  expect(ended - began).toBeGreaterThan(100)
  expect(longest).toBeLessThan(50)
  expect(await s.verify()).toMatchObject({ ok: true, firstSeq: 20_002 })
})
