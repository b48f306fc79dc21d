// node:sqlite reads on the event loop: a read that meets another process's lock waits out the connection's
// busy timeout there, and every other request (a token whose record the writer thread commits, /healthz,
// the metrics) waits with it. The main connection of a serving broker (thread mode) reads only; it must give
// up soon (an outage, 503 with Retry-After: the client comes back) instead of holding the whole broker for
// the writer's 5 s. The project's sliced reads keep a stall to milliseconds (docs/audit.md). Two reads here,
// back to back: 10 s before; the bound leaves room for a loaded CI machine's scheduling.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, expect, it } from 'vitest'
import { AuditStoreUnavailable } from '../../src/errors.ts'
import { SERVING_READ_BUSY_TIMEOUT_MS, SERVING_READ_LOCK_BACKOFF_MS, SqliteStore } from '../../src/storage/sqlite_store.ts'
import { holdWalRecovery } from '../support/sqlite_recovery_lock.ts'

const dir = mkdtempSync(join(tmpdir(), 'ctb-readstall-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

/** The longest gap between ticks of a 10 ms timer while `run` runs: how long the event loop was held. */
async function longestStall(run: () => Promise<void>): Promise<number> {
  let last = performance.now()
  let longest = 0
  const timer = setInterval(() => { const now = performance.now(); longest = Math.max(longest, now - last); last = now }, 10)
  try {
    await run()
  } finally {
    clearInterval(timer)
  }
  return Math.max(longest, performance.now() - last)
}

it('a serving store\'s read on a locked file fails as an outage without holding the event loop for seconds', async () => {
  // As serve opens it: the writer thread, the default busy timeouts.
  const store = new SqliteStore({ file: join(dir, 'audit.db') })
  try {
    await store.record({ type: 'token.issued', time: 1_700_000_000, jti: 'j-1', role: 'monitoring', site: 'east' })
    const lock = await holdWalRecovery(join(dir, 'audit.db'))
    try {
      const errors: unknown[] = []
      const stall = await longestStall(async () => {
        errors.push(await store.readCredential('ada', 'cms').then(() => undefined, (e: unknown) => e))
        errors.push(await store.listRevocations().then(() => undefined, (e: unknown) => e))
      })
      for (const err of errors) expect(err).toBeInstanceOf(AuditStoreUnavailable)
      expect(stall).toBeLessThan(1500)
    } finally {
      await lock.release()
    }
    // The lock gone, the same connection reads again once the pause after a locked read is over.
    await new Promise((r) => setTimeout(r, SERVING_READ_LOCK_BACKOFF_MS + 100))
    expect(await store.readCredential('ada', 'cms')).toBeUndefined()
  } finally {
    await store.close()
  }
}, 30_000)

// Bounded per read is not bounded per burst: N reads in one turn (a busy broker's requests, each reading the
// credential or revocation tables) each waited their 250 ms, one after another, N x 250 ms of frozen event
// loop. Once a read has waited out the lock, the reads after it are refused at once (the same 503 with
// Retry-After) for a short while (SERVING_READ_LOCK_BACKOFF_MS), and then one read tries the file again.
it('N reads at once on a locked file hold the event loop for about one read\'s wait, not N', async () => {
  const store = new SqliteStore({ file: join(dir, 'burst.db') })
  try {
    await store.record({ type: 'token.issued', time: 1_700_000_000, jti: 'j-1', role: 'monitoring', site: 'east' })
    const lock = await holdWalRecovery(join(dir, 'burst.db'))
    const n = 20
    try {
      let errors: unknown[] = []
      const stall = await longestStall(async () => {
        errors = await Promise.all(Array.from({ length: n }, (_, i) =>
          (i % 2 ? store.readCredential('ada', 'cms') : store.listRevocations()).then(() => undefined, (e: unknown) => e)))
      })
      console.log(`${n} concurrent reads on a locked file: the event loop was held ${Math.round(stall)} ms`)
      for (const err of errors) {
        expect(err).toBeInstanceOf(AuditStoreUnavailable)
        expect((err as AuditStoreUnavailable).retryAfter).toBeGreaterThanOrEqual(1)
      }
      // One 250 ms wait, plus room for a loaded machine: 20 reads waited 5 s in a row before.
      expect(stall).toBeLessThan(1500)
      // Past the pause, a read tries the file again, and still meets the lock.
      await new Promise((r) => setTimeout(r, SERVING_READ_LOCK_BACKOFF_MS + 100))
      const again = performance.now()
      expect(await store.readCredential('ada', 'cms').then(() => undefined, (e: unknown) => e)).toBeInstanceOf(AuditStoreUnavailable)
      expect(performance.now() - again).toBeGreaterThanOrEqual(SERVING_READ_BUSY_TIMEOUT_MS - 10)
    } finally {
      await lock.release()
    }
    await new Promise((r) => setTimeout(r, SERVING_READ_LOCK_BACKOFF_MS + 100))
    expect(await store.readCredential('ada', 'cms')).toBeUndefined()
  } finally {
    await store.close()
  }
}, 30_000)
