import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { runCli } from '../../src/cli/main.ts'
import { ensureAuditMacKeyFile } from '../../src/keys/audit_mac_key.ts'
import { tempDir } from '../support/tmp.ts'

async function cli(env: NodeJS.ProcessEnv, ...argv: string[]) {
  const out: string[] = []
  const err: string[] = []
  const code = await runCli(argv, { out: (s) => out.push(s), err: (s) => err.push(s), env })
  return { code, out: out.join('\n'), err: err.join('\n') }
}

// The reading audit commands open a log that must already exist: pointed at the wrong place (a relative
// data_dir from another working directory, a mistyped audit.sqlite.file), verify created an empty log there
// and reported "audit chain OK: 0 records", exit 0 on a host holding the MAC key.
describe('audit commands that only read, on a path with no audit log', () => {
  const setup = () => {
    const dataDir = join(tempDir(), 'data')
    ensureAuditMacKeyFile(join(dataDir, 'keys', 'audit_mac.key'))
    const file = join(dataDir, 'elsewhere.db')
    return { file, env: { CTB_DATA_DIR: dataDir, CTB_TRUST_DOMAIN: 'pool.example.org', CTB_AUDIT_SQLITE_FILE: file } }
  }

  it('audit verify creates nothing and fails in one line', async () => {
    const { file, env } = setup()
    const r = await cli(env, 'audit', 'verify')
    expect(r.code).toBe(1)
    expect(r.out).toBe('')
    expect(r.err).toBe(`condor-token-broker: no audit log at ${file}: check audit.sqlite.file and data_dir (a relative data_dir is taken from the working directory); audit verify only reads and creates none`)
    expect(existsSync(file)).toBe(false)
  })

  for (const argv of [['list'], ['list', '--json'], ['export']]) {
    it(`audit ${argv.join(' ')} creates nothing and prints no record`, async () => {
      const { file, env } = setup()
      const r = await cli(env, 'audit', ...argv)
      expect(r.code).toBe(0)
      expect(r.out).toBe('')
      expect(r.err).toBe(`(no audit log at ${file}: no records)`)
      expect(existsSync(file)).toBe(false)
    })
  }
})
