// The SQLite read-outage tests hold a WAL index locked through python3 (test/support/sqlite_recovery_lock.ts):
// .ci/run installs it with the other Debian peers. Where it is missing all the same (a developer's machine),
// the tests must say what to install, not fail on a bare "spawn python3 ENOENT".
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, expect, it } from 'vitest'
import { holdWalRecovery } from '../support/sqlite_recovery_lock.ts'

const dir = mkdtempSync(join(tmpdir(), 'ctb-nopython-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

it('names the Debian package to install when python3 cannot be run', async () => {
  const err = await holdWalRecovery(join(dir, 'audit.db'), { python: join(dir, 'python3') }).then(() => undefined, (e: unknown) => e)
  expect(err).toBeInstanceOf(Error)
  expect((err as Error).message).toMatch(/python3/)
  expect((err as Error).message).toContain('apt-get install python3')
})
