import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { cli } from '../support/cli.ts'
import { tempDir } from '../support/tmp.ts'

// An empty answer reads as "the command did nothing" (or as a hang in a script's log); pilot list says
// "no live pilots", and credential list should say as much, and why when the feature is off.
describe('credential list with nothing stored', () => {
  it('says so in one line, naming credentials.enabled when it is off', async () => {
    const env = { CTB_DATA_DIR: join(tempDir(), 'data'), CTB_TRUST_DOMAIN: 'pool.example.org' }
    const r = await cli(['credential', 'list'], env)
    expect(r.code, r.err).toBe(0)
    expect(r.out).toBe('no stored job credentials (credentials.enabled is false in this configuration)')
  })

  it('--json prints nothing at all for an empty list', async () => {
    const env = { CTB_DATA_DIR: join(tempDir(), 'data'), CTB_TRUST_DOMAIN: 'pool.example.org' }
    const r = await cli(['credential', 'list', '--json'], env)
    expect(r.code, r.err).toBe(0)
    expect(r.out).toBe('')
  })
})
