import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
import { cli } from '../support/cli.ts'
import { tempDir } from '../support/tmp.ts'

// Every revoke subcommand parsed the options of all of them and ignored those not its own: `revoke list --jti X`
// listed everything, `revoke lift 1 --all` lifted, `revoke --jti J --out FILE` revoked and wrote no file. Each now
// refuses what it does not take, in one line with exit 2, as every other command refuses an unknown option.
describe('revoke subcommands refuse options they do not take', () => {
  const env = async () => {
    const dataDir = join(tempDir(), 'data')
    await new SqliteStore({ file: join(dataDir, 'audit.db'), writer: 'inline' }).close()
    return { CTB_DATA_DIR: dataDir, CTB_TRUST_DOMAIN: 'pool.example.org' }
  }
  const refused = (option: string) => new RegExp(`^condor-token-broker: Unknown option '${option}'[^\\n]*\\(see --help\\)$`)

  it.each([
    [['list', '--jti', 'j-1'], '--jti'], [['list', '--out', 'f'], '--out'], [['list', '--reason', 'r'], '--reason'],
    [['condor', '--jti', 'j-1'], '--jti'], [['condor', '--all'], '--all'], [['condor', '--json'], '--json'],
  ])('revoke %j is refused in one line, exit 2', async (args, option) => {
    const r = await cli(['revoke', ...args], await env())
    expect(r.code).toBe(2)
    expect(r.out).toBe('')
    expect(r.err).toMatch(refused(option))
  })

  it.each([
    [['--jti', 'j-1', '--out', 'f'], '--out'], [['--jti', 'j-1', '--all'], '--all'], [['--sub', 'alice', '--json'], '--json'],
  ])('revoke %j is refused and stores nothing', async (args, option) => {
    const e = await env()
    const r = await cli(['revoke', ...args], e)
    expect(r.code).toBe(2)
    expect(r.err).toMatch(refused(option))
    expect((await cli(['revoke', 'list', '--all', '--json'], e)).out).toBe('')
  })

  it.each([[['--all'], '--all'], [['--json'], '--json'], [['--exp', '1900000000'], '--exp'], [['--jti', 'j-2'], '--jti']])('revoke lift 1 %j is refused and lifts nothing', async (extra, option) => {
    const e = await env()
    expect((await cli(['revoke', '--jti', 'j-1'], e)).code).toBe(0)
    const r = await cli(['revoke', 'lift', '1', ...extra], e)
    expect(r.code).toBe(2)
    expect(r.err).toMatch(refused(option))
    const active = await cli(['revoke', 'list', '--json'], e)
    expect(active.out.split('\n').map((l) => (JSON.parse(l) as { id: number }).id)).toEqual([1])
  })

  it('still takes each subcommand\'s own options', async () => {
    const e = await env()
    expect((await cli(['revoke', '--jti', 'j-1', '--reason', 'leaked', '--dry-run'], e)).code).toBe(0)
    expect((await cli(['revoke', 'list', '--all', '--json'], e)).code).toBe(0)
    expect((await cli(['revoke', '--jti', 'j-1', '--reason', 'leaked'], e)).code).toBe(0)
    expect((await cli(['revoke', 'lift', '1', '--reason', 'false alarm'], e)).code).toBe(0)
  })
})
