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
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
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
    // The lock gone, the same connection reads again.
    expect(await store.readCredential('ada', 'cms')).toBeUndefined()
  } finally {
    await store.close()
  }
}, 30_000)
