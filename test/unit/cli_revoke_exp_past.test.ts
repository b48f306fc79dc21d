import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
import { cli } from '../support/cli.ts'
import { tempDir } from '../support/tmp.ts'

// `revoke --jti J --exp 0` was refused, but any other exp in the past (`--exp 1000`) stored an entry that had
// already ended and answered "revoked ... listed until 1970-01-01T00:16:40Z". Refused with the wording the admin
// API uses (the rule is the service's).
describe('revoke --jti with an --exp already past', () => {
  const env = async () => {
    const dataDir = join(tempDir(), 'data')
    await new SqliteStore({ file: join(dataDir, 'audit.db'), writer: 'inline' }).close()
    return { CTB_DATA_DIR: dataDir, CTB_TRUST_DOMAIN: 'pool.example.org' }
  }

  it.each([['1000'], [String(Math.floor(Date.now() / 1000) - 3600)]])('refuses --exp %s with one line and a non-zero exit, storing nothing', async (exp) => {
    const e = await env()
    const r = await cli(['revoke', '--jti', 'j-1', '--exp', exp], e)
    expect(r.code).toBe(1)
    expect(r.out).toBe('')
    expect(r.err).toBe(`condor-token-broker: exp ${exp} is more than 60 s in the past (the clock skew allowed): the token has already expired, so the entry would revoke nothing`)
    const list = await cli(['revoke', 'list', '--all', '--json'], e)
    expect(list.code, list.err).toBe(0)
    expect(list.out).toBe('')
  })
})
