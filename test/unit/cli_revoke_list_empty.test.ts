import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { cli } from '../support/cli.ts'
import { tempDir } from '../support/tmp.ts'

// After `revoke lift`, `revoke list` printed nothing at all: an admin checking the lift cannot tell an
// empty list from a command that did nothing. pilot list and credential list say so in one line.
describe('revoke list with nothing to list', () => {
  const env = () => ({ CTB_DATA_DIR: join(tempDir(), 'data'), CTB_TRUST_DOMAIN: 'pool.example.org' })

  it('says there are no active revocations and where the lifted ones are', async () => {
    const r = await cli(['revoke', 'list'], env())
    expect(r.code, r.err).toBe(0)
    expect(r.out).toBe('no active revocations (--all also lists lifted ones and those that can no longer match)')
  })

  it('with --all says there are none at all', async () => {
    const r = await cli(['revoke', 'list', '--all'], env())
    expect(r.code, r.err).toBe(0)
    expect(r.out).toBe('no revocations')
  })

  it('--json prints nothing at all for an empty list', async () => {
    const r = await cli(['revoke', 'list', '--json'], env())
    expect(r.code, r.err).toBe(0)
    expect(r.out).toBe('')
  })
})
