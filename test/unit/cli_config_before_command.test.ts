import { existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { cli } from '../support/cli.ts'
import { tempDir } from '../support/tmp.ts'

// HTCondor's tools and most admin CLIs take a global option before the subcommand
// (`condor-token-broker --config /etc/condor-token-broker/broker.yaml revoke --role startd`); the README
// calls --config a common option, so it must work there too, and mean the same as after the command.
function configFile(): { file: string; dataDir: string } {
  const dir = tempDir()
  const dataDir = join(dir, 'data')
  const file = join(dir, 'broker.yaml')
  writeFileSync(file, `trust_domain: pool.example.org\ndata_dir: ${dataDir}\n`)
  return { file, dataDir }
}

describe('--config before the command', () => {
  it.each([
    ['--config FILE', (f: string) => ['--config', f]],
    ['--config=FILE', (f: string) => [`--config=${f}`]],
  ])('%s selects the configuration for the command that follows', async (_form, option) => {
    const { file, dataDir } = configFile()
    const r = await cli([...option(file), 'keys', 'init'], {})
    expect(r.code, r.err).toBe(0)
    expect(existsSync(join(dataDir, 'keys', 'condor', 'broker1'))).toBe(true)
  })

  it('a --config with no file is one line and status 2', async () => {
    const r = await cli(['--config'], {})
    expect(r.code).toBe(2)
    expect(r.err).toMatch(/^condor-token-broker: --config needs a file/)
  })
})
