import { setTimeout as sleep } from 'node:timers/promises'
import { expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/audit_log.ts'
import type { StoredRow } from '../../src/audit/chain.ts'
import { startRetention } from '../../src/audit/retention.ts'
import { fixedClock } from '../../src/lib/clock.ts'
import type { Logger } from '../../src/lib/logger.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'

// At SIGTERM serve runs its closers newest first: retention's stop, later the store's close. A prune
// that the timer started just before must have let go of the store by the time close() runs, or it
// goes on against a closed store and logs its failure on the way out.
const T0 = 1_800_000_000
const DAY = 86400
const issued = (i: number): AuditEvent => ({ type: 'token.issued', time: T0 + i, jti: `j-${i}`, caller: { sub: 'alice' }, decision: 'allow' })

/** A store whose row scan (the first thing a prune does) waits for `release` once it has begun. */
class HeldScan extends MemoryStore {
  scanning = false
  release!: () => void
  readonly #gate = new Promise<void>((resolve) => { this.release = resolve })
  protected override async *scanRows(fromSeq: number): AsyncIterable<StoredRow> {
    this.scanning = true
    await this.#gate
    yield* super.scanRows(fromSeq)
  }
}

it('stopping retention waits for a prune in flight to let go of the store, which then closes with nothing logged', async () => {
  const store = new HeldScan()
  for (let i = 1; i <= 3; i++) await store.record(issued(i))
  const logged: string[] = []
  const log: Logger = { info: () => {}, warn: (m) => logged.push(`warn: ${m}`), error: (m) => logged.push(`error: ${m}`) }
  // Everything is ten days old against a one-day retention: the first tick prunes.
  const stop = startRetention(store, { days: 1, intervalSeconds: 0.01, clock: fixedClock(T0 + 10 * DAY), log })
  for (let i = 0; i < 200 && !store.scanning; i++) await sleep(5)
  expect(store.scanning).toBe(true)

  let stopped = false
  const stopping = Promise.resolve(stop()).then(() => { stopped = true })
  await sleep(30)
  expect(stopped).toBe(false)
  store.release()
  await stopping
  await store.close()
  // Long enough for a prune that outlived close() to fail and say so.
  await sleep(50)
  expect(logged).toEqual([])
  // Abandoned before it deleted anything: the log is whole and still starts at seq 1.
  expect(await store.verify()).toMatchObject({ ok: true, firstSeq: 1 })
})
