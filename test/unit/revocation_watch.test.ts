import { describe, expect, it } from 'vitest'
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
it('stop() gives up a check that does not finish within its bound, saying so, instead of waiting for it', async () => {
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
  const watch = startRevocationWatch(store, { anchorKey: () => Buffer.alloc(32, 7), anchorCopy, intervalSeconds: 600, log, stopCheckMs: 200 })
  void watch.check()
  await running
  const stopped = await Promise.race([watch.stop().then(() => 'stopped'), new Promise((r) => setTimeout(r, 1000, 'still waiting'))])
  expect(stopped).toBe('stopped')
  expect(logged).toEqual(['could not anchor the audit log at stop within 0.2 s; records appended since the last check are covered by no anchor'])
})

// The last check at stop reads the database even when nothing is left to write. A read that neither answers
// nor fails (a PostgreSQL server cut off by the network: the query waits on TCP, it cannot see the signal)
// held stop() without bound, where before it returned at once; its bound is the documented 5 s.
it('stop() keeps its bound when the last check waits on a database that does not answer', async () => {
  const store = { verifyRevocations: () => new Promise<never>(() => {}) }
  const logged: string[] = []
  const log: Logger = { info() {}, warn(m) { logged.push(m) }, error(m) { logged.push(m) } }
  const anchorCopy: AnchorCopy = { read: async () => undefined, write: async () => {} }
  const watch = startRevocationWatch(store, { anchorKey: () => Buffer.alloc(32, 7), anchorCopy, intervalSeconds: 600, log, stopCheckMs: 200 })
  const stopped = await Promise.race([watch.stop().then(() => 'stopped'), new Promise((r) => setTimeout(r, 1500, 'still waiting'))])
  expect(stopped).toBe('stopped')
  expect(logged).toEqual(['could not anchor the audit log at stop within 0.2 s; records appended since the last check are covered by no anchor'])
})

// The anchor followed the log only every anchor_interval (600 s): a copy of the database taken after a
// revocation and restored later (the broker stopped) lost it, and the next start found nothing amiss.
describe('anchoring soon after a revocation, and at stop', () => {
  const key = Buffer.alloc(32, 7)
  const quiet: Logger = { info() {}, warn() {}, error() {} }
  /** A MemoryStore whose checks are counted, and may be held until released. */
  function counted() {
    const store = new MemoryStore()
    const calls = { n: 0 }
    let gate: Promise<void> | undefined
    const watched = {
      verifyRevocations: async (o?: Parameters<MemoryStore['verifyRevocations']>[0]) => { calls.n++; const v = await store.verifyRevocations(o); await gate; return v },
    }
    return { store, watched, calls, hold: (p: Promise<void>) => { gate = p } }
  }
  const settle = (ms: number) => new Promise((r) => setTimeout(r, ms))

  it('a burst of revocations is anchored by one check, soon after the last', async () => {
    const s = counted()
    const watch = startRevocationWatch(s.watched, { anchorKey: () => key, anchorCopy: { read: async () => undefined, write: async () => {} }, intervalSeconds: 600, log: quiet, afterChangeMs: 50 })
    try {
      for (let i = 1; i <= 5; i++) { await s.store.record(issued(i)); watch.afterChange() }
      for (let i = 0; i < 40 && s.calls.n === 0; i++) await settle(25)
      await settle(200)
      expect(s.calls.n).toBe(1)
    } finally { await watch.stop() }
  })

  it('seals an anchor at the head soon after a change, and again after one made while a check ran', async () => {
    const s = counted()
    let sealed: string | undefined
    const watch = startRevocationWatch(s.watched, { anchorKey: () => key, anchorCopy: { read: async () => sealed, write: async (x) => { sealed = x } }, intervalSeconds: 600, log: quiet, afterChangeMs: 20 })
    try {
      await s.store.record(issued(1))
      let release!: () => void
      s.hold(new Promise<void>((r) => { release = r }))
      watch.afterChange()
      for (let i = 0; i < 40 && sealed === undefined; i++) await settle(25)
      // A revocation commits while that check is held, after it read the log and sealed seq 1.
      expect(sealed).toMatch(/"seq":1,/)
      await s.store.record(issued(2))
      watch.afterChange()
      s.hold(Promise.resolve())
      release()
      for (let i = 0; i < 80 && !/"seq":2,/.test(sealed ?? ''); i++) await settle(25)
      expect(sealed).toMatch(/"seq":2,/)
    } finally { await watch.stop() }
  })

  it('stop() seals an anchor over what was appended since the last check', async () => {
    const store = new MemoryStore()
    let sealed: string | undefined
    const watch = startRevocationWatch(store, { anchorKey: () => key, anchorCopy: { read: async () => sealed, write: async (x) => { sealed = x } }, intervalSeconds: 600, log: quiet })
    await store.record(issued(1))
    await watch.check()
    expect(sealed).toMatch(/"seq":1,/)
    for (let i = 2; i <= 4; i++) await store.record(issued(i))
    await watch.stop()
    expect(sealed).toMatch(/"seq":4,/)
  })
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

// A stop's own check is the last: nothing runs after it. When its anchor could not be written into the
// database, the log said the check "runs again every 30 s until it is written", which no stopped broker does,
// or (after earlier failures already logged) said nothing at all about the stop's anchor.
describe('an anchor write that fails at stop', () => {
  class NoAnchorWrites extends MemoryStore {
    failing = false
    protected override async writeAnchor(sealed: string): Promise<void> {
      if (this.failing) throw new Error('database is locked')
      return super.writeAnchor(sealed)
    }
  }
  const setUp = () => {
    const store = new NoAnchorWrites()
    const warnings: string[] = []
    const log: Logger = { info() {}, warn(m) { warnings.push(m) }, error(m) { warnings.push(m) } }
    const anchorCopy: AnchorCopy = { read: async () => undefined, write: async () => {} }
    const watch = startRevocationWatch(store, { anchorKey: () => Buffer.alloc(32, 7), anchorCopy, intervalSeconds: 600, log, anchorRetryMs: 60_000 })
    return { store, warnings, watch }
  }

  it('is said as the stop\'s, not promised a retry', async () => {
    const { store, warnings, watch } = setUp()
    await store.record(issued(1))
    store.failing = true
    await watch.stop()
    expect(warnings).toHaveLength(1)
    expect(warnings[0]).toContain('at stop')
    expect(warnings[0]).not.toContain('runs again')
  })

  it('is said at stop even after earlier failures were logged', async () => {
    const { store, warnings, watch } = setUp()
    await store.record(issued(1))
    store.failing = true
    await watch.check()
    expect(warnings).toHaveLength(1)
    await store.record(issued(2))
    await watch.stop()
    expect(warnings).toHaveLength(2)
    expect(warnings[1]).toContain('at stop')
  })
})
