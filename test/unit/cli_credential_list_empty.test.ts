import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
import { cli } from '../support/cli.ts'
import { tempDir } from '../support/tmp.ts'

// An empty answer reads as "the command did nothing" (or as a hang in a script's log); pilot list says
// "no live pilots", and credential list should say as much, and why when the feature is off.
describe('credential list with nothing stored', () => {
  // A log with nothing in it, as a broker leaves it on its first start (a reader creates none).
  const emptyLog = async () => {
    const dataDir = join(tempDir(), 'data')
    await new SqliteStore({ file: join(dataDir, 'audit.db'), writer: 'inline' }).close()
    return { CTB_DATA_DIR: dataDir, CTB_TRUST_DOMAIN: 'pool.example.org' }
  }

  it('says so in one line, naming credentials.enabled when it is off', async () => {
    const env = await emptyLog()
    const r = await cli(['credential', 'list'], env)
    expect(r.code, r.err).toBe(0)
    expect(r.out).toBe('no stored job credentials (credentials.enabled is false in this configuration)')
  })

  it('--json prints nothing at all for an empty list', async () => {
    const env = await emptyLog()
    const r = await cli(['credential', 'list', '--json'], env)
    expect(r.code, r.err).toBe(0)
    expect(r.out).toBe('')
  })
})
