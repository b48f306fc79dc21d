import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
import { cli } from '../support/cli.ts'
import { tempDir } from '../support/tmp.ts'

// `--exp` is the exp of one token, for a jti revocation only; given with --sub it was dropped without a word,
// and an operator who meant to bound the entry got one that lasts the longest token lifetime instead.
describe('revoke --exp with a kind other than --jti', () => {
  const env = async () => {
    const dataDir = join(tempDir(), 'data')
    await new SqliteStore({ file: join(dataDir, 'audit.db'), writer: 'inline' }).close()
    return { CTB_DATA_DIR: dataDir, CTB_TRUST_DOMAIN: 'pool.example.org' }
  }

  it.each([[['--sub', 'alice']], [['--client', 'factory']], [['--sub', 'alice', '--dry-run']]])('refuses %j with one line and a non-zero exit, storing nothing', async (args) => {
    const e = await env()
    const r = await cli(['revoke', ...args, '--exp', '1900000000'], e)
    expect(r.code).not.toBe(0)
    expect(r.out).toBe('')
    expect(r.err).toBe('condor-token-broker: exp applies only to jti revocations')
    const list = await cli(['revoke', 'list', '--all', '--json'], e)
    expect(list.code, list.err).toBe(0)
    expect(list.out).toBe('')
  })
})
