import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { cli } from '../support/cli.ts'

// sysexits.h: EX_CONFIG 78, "something was found in an unconfigured or misconfigured state". Under the
// systemd unit (Restart=on-failure) a configuration that cannot start, exiting 1 like a transient failure,
// was restarted every RestartSec for ever and never showed as failed.
const EX_CONFIG = 78

let dir: string
beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'ctb-exconfig-')) })
afterEach(() => rmSync(dir, { recursive: true, force: true }))

function config(text: string): string {
  const f = join(dir, 'broker.yaml')
  writeFileSync(f, text)
  return f
}

describe('serve refuses a configuration it cannot start with status 78 (EX_CONFIG)', () => {
  it('an unknown configuration key', async () => {
    const r = await cli(['serve', '--config', config(`data_dir: ${join(dir, 'data')}\nlisten:\n  prot: 8443\n`)], {})
    expect(r.code).toBe(EX_CONFIG)
    expect(r.err).toMatch(/^condor-token-broker: invalid configuration/)
    expect(r.err).not.toMatch(/\n\s+at /)
  })

  it('a configuration file that does not exist', async () => {
    const r = await cli(['serve', '--config', join(dir, 'missing.yaml')], {})
    expect(r.code).toBe(EX_CONFIG)
    expect(r.err).toBe(`condor-token-broker: cannot read config file ${join(dir, 'missing.yaml')}: ENOENT`)
  })

  it('a start-up check (a public issuer without an IAM issuer)', async () => {
    const r = await cli(['serve', '--config', config(`issuer: https://broker.example.org\ntrust_domain: pool.example.org\ndata_dir: ${join(dir, 'data')}\ntls:\n  mode: off\nlisten:\n  port: 0\n`)], {})
    expect(r.code).toBe(EX_CONFIG)
    expect(r.err).toMatch(/no IAM issuer configured/)
  })

  // Files on disk the operator must mend, as a TLS key or the audit MAC key that group can read already are
  // (EX_CONFIG through the start-up checks): restarting every 5 s changes neither.
  function productionWithKeys(): string {
    const f = config(`issuer: https://broker.example.org\ntrust_domain: pool.example.org\ndata_dir: ${join(dir, 'data')}\ntls:\n  mode: off\nlisten:\n  port: 0\niam:\n  issuers:\n    - issuer: https://iam.example.org/\n      audience: https://broker.example.org\n`)
    return f
  }

  it('an HTCondor signing key that group or other can read', async () => {
    const f = productionWithKeys()
    expect((await cli(['keys', 'init', '--config', f], {})).code).toBe(0)
    const key = join(dir, 'data', 'keys', 'condor', 'broker1')
    chmodSync(key, 0o644)
    const r = await cli(['serve', '--config', f], {})
    expect(r.code).toBe(EX_CONFIG)
    expect(r.err).toBe(`condor-token-broker: ${key} has mode 0644; key and token files must not be accessible to group or other (chmod 600 ${key})`)
  })

  it('a SciToken keyring that is not JSON', async () => {
    const f = productionWithKeys()
    expect((await cli(['keys', 'init', '--config', f], {})).code).toBe(0)
    const ring = join(dir, 'data', 'keys', 'jwt', 'keyring.json')
    writeFileSync(ring, '{', { mode: 0o600 })
    const r = await cli(['serve', '--config', f], {})
    expect(r.code).toBe(EX_CONFIG)
    expect(r.err).toBe(`condor-token-broker: ${ring} is not valid JSON`)
  })

  it('an idtoken.key that is no usable key file name', async () => {
    const r = await cli(['serve'], { CTB_DATA_DIR: join(dir, 'data'), CTB_IDTOKEN_KEY: 'a/b' })
    expect(r.code).toBe(EX_CONFIG)
    expect(r.err).toMatch(/^condor-token-broker: invalid configuration:\n[^\n]*idtoken\.key[^\n]*invalid key name "a\/b"/)
  })

  it('leaves a usage error at 2, as every command has it', async () => {
    const r = await cli(['serve', '--no-such-option'], {})
    expect(r.code).toBe(2)
  })
})

describe('serve leaves a failure a restart can mend at 1, for the unit to restart', () => {
  it('a listen port another process holds', async () => {
    const holder = createServer()
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve))
    try {
      const port = (holder.address() as { port: number }).port
      const r = await cli(['serve'], { CTB_DATA_DIR: join(dir, 'data'), CTB_LISTEN_HOST: '127.0.0.1', CTB_LISTEN_PORT: String(port), CTB_DEV_IAM_PORT: '0', CTB_POLICY_WATCH: 'false' })
      expect(r.code).toBe(1)
      expect(r.err).toMatch(/EADDRINUSE/)
    } finally {
      await new Promise<void>((resolve) => holder.close(() => resolve()))
    }
  })
})

describe('the systemd unit', () => {
  it('does not restart serve on a configuration error or a usage error', () => {
    const unit = readFileSync('packaging/condor-token-broker.service', 'utf8')
    const service = unit.slice(unit.indexOf('[Service]'), unit.indexOf('[Install]'))
    const lines = service.split('\n').filter((l) => l.startsWith('RestartPreventExitStatus='))
    expect(lines).toHaveLength(1)
    expect(lines[0]!.slice('RestartPreventExitStatus='.length).split(/\s+/).sort()).toEqual(['2', String(EX_CONFIG)])
  })
})
