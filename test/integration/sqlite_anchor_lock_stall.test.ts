// The audit anchor is written at every check while serving (audit.anchor_interval, after revocations, at
// stop). It was written on the store's own connection, on the event loop, with the writer's 5 s busy wait:
// while another process held the write lock (an admin's `audit prune`, a CLI `revoke`, a backup) the whole
// broker froze for those 5 s once per check, and the write then failed without a word (the next start-up
// only checked more records). The lock here is a second connection's BEGIN IMMEDIATE, which takes the same
// write lock another process's writer takes.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { afterAll, expect, it } from 'vitest'
import { openAnchor, type AnchorCopy } from '../../src/audit/anchor.ts'
import type { Logger } from '../../src/lib/logger.ts'
import { startRevocationWatch } from '../../src/revocation/revocation_watch.ts'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'

const dir = mkdtempSync(join(tmpdir(), 'ctb-anchorlock-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const KEY = Buffer.alloc(32, 9)
const BUSY_MS = 2000

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

function sealedSeq(file: string): number | undefined {
  const db = new DatabaseSync(file, { readOnly: true })
  try {
    const row = db.prepare('SELECT sealed FROM audit_anchor WHERE id = 1').get() as { sealed: string } | undefined
    return openAnchor(row?.sealed, KEY)?.seq
  } finally { db.close() }
}

it('an anchor write that meets another writer\'s lock neither holds the event loop nor goes unsaid, and is retried', async () => {
  const file = join(dir, 'audit.db')
  // As serve opens it (the writer thread), with a shorter busy wait so the test is quick: the stall it
  // caused was the busy wait, whatever its length.
  const store = new SqliteStore({ file, busyTimeoutMs: BUSY_MS })
  const warnings: string[] = []
  const infos: string[] = []
  const log: Logger = { info(m) { infos.push(m) }, warn(m) { warnings.push(m) }, error(m) { warnings.push(m) } }
  let copy: string | undefined
  const anchorCopy: AnchorCopy = { read: async () => copy, write: async (s) => { copy = s } }
  const watch = startRevocationWatch(store, { anchorKey: () => KEY, anchorCopy, intervalSeconds: 600, log, anchorRetryMs: 200 })
  const holder = new DatabaseSync(file)
  try {
    for (let i = 1; i <= 3; i++) await store.record({ type: 'token.issued', time: 1_700_000_000 + i, jti: `j-${i}` })
    holder.exec('BEGIN IMMEDIATE')
    let held = true
    try {
      const stall = await longestStall(() => watch.check())
      console.log(`anchor write under another connection's write lock (busy wait ${BUSY_MS} ms): event loop held ${Math.round(stall)} ms`)
      expect(stall).toBeLessThan(BUSY_MS / 4)
      expect(sealedSeq(file)).toBeUndefined()
      expect(warnings.filter((w) => w.includes('could not write the audit anchor into the database'))).toHaveLength(1)
    } finally {
      if (held) { holder.exec('ROLLBACK'); held = false }
    }
    // The lock gone, the retry (anchorRetryMs, not the next anchor_interval) writes it.
    for (let i = 0; i < 100 && sealedSeq(file) !== 3; i++) await new Promise((r) => setTimeout(r, 50))
    expect(sealedSeq(file)).toBe(3)
    expect(infos.filter((m) => m.includes('audit anchor written into the database again'))).toHaveLength(1)
    expect(await store.verifyAll({ anchorKey: KEY })).toMatchObject({ chain: { ok: true }, revocations: { ok: true } })
  } finally {
    holder.close()
    await watch.stop()
    await store.close()
  }
}, 30_000)
