import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
import { cli } from '../support/cli.ts'
import { tempDir } from '../support/tmp.ts'

// The audit subcommands shared one option table and each ignored what was not its own: `audit verify --jti X`
// verified the whole log as if it had checked one token, `audit prune --jti X` pruned by retention as if it
// had pruned one token's records, `audit export --limit 5` exported everything. Each now refuses another's
// option in one line with exit 2, before opening anything, as revoke's subcommands and every command do.
describe('audit subcommands refuse options they do not take', () => {
  const env = async () => {
    const dataDir = join(tempDir(), 'data')
    await new SqliteStore({ file: join(dataDir, 'audit.db'), writer: 'inline' }).close()
    return { CTB_DATA_DIR: dataDir, CTB_TRUST_DOMAIN: 'pool.example.org' }
  }
  const refused = (option: string) => new RegExp(`^condor-token-broker: Unknown option '${option}'[^\\n]*\\(see --help\\)$`)

  it.each([
    [['verify', '--jti', 'j-1'], '--jti'], [['verify', '--from', '0'], '--from'], [['verify', '--json'], '--json'], [['verify', '--days', '3'], '--days'],
    [['prune', '--jti', 'j-1'], '--jti'], [['prune', '--to', '0'], '--to'], [['prune', '--out', 'f'], '--out'],
    [['export', '--limit', '5'], '--limit'], [['export', '--json'], '--json'], [['export', '--days', '3'], '--days'],
    [['list', '--out', 'f'], '--out'], [['list', '--days', '3'], '--days'],
  ])('audit %j is refused in one line, exit 2', async (args, option) => {
    const r = await cli(['audit', ...args], await env())
    expect(r.code).toBe(2)
    expect(r.out).toBe('')
    expect(r.err).toMatch(refused(option))
  })

  it('still takes each subcommand\'s own options', async () => {
    const e = await env()
    expect((await cli(['audit', 'list', '--jti', 'j-1', '--from', '0', '--limit', '5', '--json'], e)).code).toBe(0)
    expect((await cli(['audit', 'export', '--jti', 'j-1', '--type', 'token.issued'], e)).code).toBe(0)
    expect((await cli(['audit', 'verify'], e)).code).not.toBe(2)
    expect((await cli(['audit', 'prune', '--days', '30'], e)).code).toBe(0)
  })
})
