import { expect, it } from 'vitest'
import type { AnchorCopy } from '../../src/audit/anchor.ts'
import type { Logger } from '../../src/lib/logger.ts'
import { startRevocationWatch } from '../../src/revocation/revocation_watch.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'

// The sealed anchor only advanced at start-up, so what a broker appended while serving for months was
// covered by no anchor: cut off or rewritten, nothing told until someone compared a head kept elsewhere.
const T0 = 1_800_000_000
const issued = (i: number) => ({ type: 'token.issued', time: T0 + i, jti: `j-${i}`, caller: { sub: 'alice' }, decision: 'allow' } as const)

it('re-checks while serving, advances the anchor and its copy, and reports a cut once', async () => {
  const store = new MemoryStore()
  let sealed: string | undefined
  const anchorCopy: AnchorCopy = { read: async () => sealed, write: async (s) => { sealed = s } }
  const errors: string[] = []
  const log: Logger = { info() {}, warn(m) { errors.push(`warn ${m}`) }, error(m, f) { errors.push(`${m} ${JSON.stringify(f)}`) } }
  const key = Buffer.alloc(32, 7)
  for (let i = 1; i <= 3; i++) await store.record(issued(i))
  const watch = startRevocationWatch(store, { anchorKey: () => key, anchorCopy, intervalSeconds: 600, log })
  try {
    await watch.check()
    expect(sealed).toMatch(/"seq":3,/)
    for (let i = 4; i <= 6; i++) await store.record(issued(i))
    await watch.check()
    expect(sealed).toMatch(/"seq":6,/)
    expect(errors).toEqual([])

    store.rawTruncate(4)
    await watch.check()
    await watch.check()
    expect(errors).toEqual([
      `the audit log no longer matches what the broker verified while serving; run "audit verify" ${JSON.stringify({ problem: 'the audit chain cannot vouch for the revocations table: the audit log ends at seq 4, but an earlier check verified it up to seq 6 (records cut off the end, or an older copy of the database restored); run "audit verify"' })}`,
    ])
    expect(sealed).toMatch(/"seq":6,/)
  } finally { await watch.stop() }
})
