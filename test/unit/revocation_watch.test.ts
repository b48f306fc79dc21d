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
      `the audit log no longer matches what the broker verified while serving; run "audit verify" ${JSON.stringify({ problem: 'the audit chain cannot vouch for the revocations table: the audit log ends at seq 4, but an earlier check verified it up to seq 6 (records cut off the end, or an older copy of the database restored: if on purpose, delete both anchors as docs/audit.md says); run "audit verify"' })}`,
    ])
    expect(sealed).toMatch(/"seq":6,/)
  } finally { await watch.stop() }
})

// Shutdown (SIGTERM) closes the store after stop(): stop() waited for a check in flight to finish, and a full
// check (the first after `keys rotate`, whose anchor reads as absent) hashes the whole log, about 1 s per
// 100,000 records, all of it added to the stop after the drain.
it('stop() abandons a check in flight instead of waiting for it to finish', async () => {
  let started!: () => void
  const running = new Promise<void>((r) => { started = r })
  const store = {
    verifyRevocations: (options?: { signal?: AbortSignal }) => new Promise<never>((_resolve, reject) => {
      started()
      options?.signal?.addEventListener('abort', () => reject(options.signal!.reason))
    }),
  }
  const logged: string[] = []
  const log: Logger = { info() {}, warn(m) { logged.push(m) }, error(m) { logged.push(m) } }
  const anchorCopy: AnchorCopy = { read: async () => undefined, write: async () => {} }
  const watch = startRevocationWatch(store, { anchorKey: () => Buffer.alloc(32, 7), anchorCopy, intervalSeconds: 600, log })
  void watch.check()
  await running
  const stopped = await Promise.race([watch.stop().then(() => 'stopped'), new Promise((r) => setTimeout(r, 1000, 'still waiting'))])
  expect(stopped).toBe('stopped')
  expect(logged).toEqual([])
})

it('a check told to stop ends without sealing an anchor', async () => {
  const store = new MemoryStore()
  for (let i = 1; i <= 3; i++) await store.record(issued(i))
  let sealed: string | undefined
  const anchorCopy: AnchorCopy = { read: async () => sealed, write: async (s) => { sealed = s } }
  const signal = AbortSignal.abort(new Error('stopping'))
  await expect(store.verifyRevocations({ anchorKey: Buffer.alloc(32, 7), anchorCopy, signal })).rejects.toThrow('stopping')
  expect(sealed).toBeUndefined()
})
