import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, expect, it } from 'vitest'
import { anchorFile } from '../../src/storage/anchor_file.ts'

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
