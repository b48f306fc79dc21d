import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, expect, it } from 'vitest'
import { startRevocationWatch } from '../../src/revocation/revocation_watch.ts'
import { anchorFile } from '../../src/storage/anchor_file.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'
import { recordingLogger } from '../support/loopback_failures.ts'

const dir = mkdtempSync(join(tmpdir(), 'ctb-anchor-file-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

// The copy is rewritten at every check while serving (audit.anchor_interval). Written with a synchronous
// fsync, a slow disk held every request of the broker for as long as the fsync took.
it('writes the copy off the event loop, durably, mode 0600', async () => {
  const path = join(dir, 'audit_anchor')
  const copy = anchorFile(path)
  const written = copy.write('a1.sealed')
  // Nothing has touched the disk in this turn: the work runs on libuv's thread pool.
  expect(existsSync(path)).toBe(false)
  await written
  expect(await copy.read()).toBe('a1.sealed')
  expect(statSync(path).mode & 0o777).toBe(0o600)
})

it('reads an absent copy as absent', async () => {
  expect(await anchorFile(join(dir, 'none')).read()).toBeUndefined()
})

// The copy outside the database is what catches a database whose anchor was deleted with the records it
// vouched for. A copy that could not be written was dropped without a word: the operator believed the log
// was covered by it while nothing outside the database had been written since.
it('logs a copy it cannot write once, with the path and errno, and keeps checking', async () => {
  // A directory where the copy should be: the rename over it fails with EISDIR (rename(2): the new path is
  // a directory, the old one is not), root or not.
  const path = join(dir, 'audit_anchor_is_a_directory')
  mkdirSync(path)
  const log = recordingLogger()
  const { lines } = log
  const store = new MemoryStore()
  await store.record({ type: 'token.issued', time: 1_800_000_000, jti: 'j-1', caller: { sub: 'alice' }, decision: 'allow' })
  const watch = startRevocationWatch(store, { anchorKey: () => Buffer.alloc(32, 7), anchorCopy: anchorFile(path, { log }), intervalSeconds: 600, log })
  try {
    await watch.check()
    await watch.check()
  } finally { await watch.stop() }
  // Both checks ran to the end (the watch logs nothing of its own): only the copy is missing. A directory
  // cannot be read either, which is said once too.
  expect(lines).toEqual([
    { level: 'warn', msg: expect.stringContaining('could not read the copy of the audit anchor'), fields: { path, code: 'EISDIR' } },
    { level: 'warn', msg: expect.stringContaining('could not write the copy of the audit anchor'), fields: { path, code: 'EISDIR' } },
  ])
})

// An unreadable copy (EISDIR here; EACCES or EIO on a real host) is checked as absent, which switches the
// copy's check off: that must be said, or the operator believes the log is covered by a copy nobody reads.
it('logs a copy it cannot read once, with the path and errno, and reads it as absent', async () => {
  const path = join(dir, 'unreadable_anchor')
  mkdirSync(path)
  const log = recordingLogger()
  const { lines } = log
  const copy = anchorFile(path, { log })
  await expect(copy.read()).rejects.toMatchObject({ code: 'EISDIR' })
  await expect(copy.read()).rejects.toMatchObject({ code: 'EISDIR' })
  expect(lines).toEqual([{ level: 'warn', msg: expect.stringContaining('could not read the copy of the audit anchor'), fields: { path, code: 'EISDIR' } }])
})
