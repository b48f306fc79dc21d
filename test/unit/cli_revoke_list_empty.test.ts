import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
import { cli } from '../support/cli.ts'
import { tempDir } from '../support/tmp.ts'

// After `revoke lift`, `revoke list` printed nothing at all: an admin checking the lift cannot tell an
// empty list from a command that did nothing. pilot list and credential list say so in one line.
describe('revoke list with nothing to list', () => {
  // A log with nothing in it, as a broker leaves it on its first start (a reader creates none).
  const env = async () => {
    const dataDir = join(tempDir(), 'data')
    await new SqliteStore({ file: join(dataDir, 'audit.db'), writer: 'inline' }).close()
    return { CTB_DATA_DIR: dataDir, CTB_TRUST_DOMAIN: 'pool.example.org' }
  }

  it('says there are no active revocations and where the lifted ones are', async () => {
    const r = await cli(['revoke', 'list'], await env())
    expect(r.code, r.err).toBe(0)
    expect(r.out).toBe('no active revocations (--all also lists lifted ones and those that can no longer match)')
  })

  it('with --all says there are none at all', async () => {
    const r = await cli(['revoke', 'list', '--all'], await env())
    expect(r.code, r.err).toBe(0)
    expect(r.out).toBe('no revocations')
  })

  it('--json prints nothing at all for an empty list', async () => {
    const r = await cli(['revoke', 'list', '--json'], await env())
    expect(r.code, r.err).toBe(0)
    expect(r.out).toBe('')
  })
})
