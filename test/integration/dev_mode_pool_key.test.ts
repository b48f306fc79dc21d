import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.ts'
import type { Logger } from '../../src/lib/logger.ts'
import { startBroker } from '../../src/server.ts'
import { startE2e } from '../support/broker_e2e.ts'
import { cli } from '../support/cli.ts'

const silent: Logger = { info() {}, warn() {}, error() {} }

let dir: string
let env: NodeJS.ProcessEnv
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ctb-devkey-'))
  env = { CTB_DATA_DIR: join(dir, 'data'), CTB_LISTEN_PORT: '0', CTB_DEV_IAM_PORT: '0', CTB_TRUST_DOMAIN: 'pool.example.org', CTB_POLICY_WATCH: 'false' }
})
afterEach(() => rmSync(dir, { recursive: true, force: true }))

/** A pool's key as the collector leaves it: 64 random bytes, mode 0600. */
function poolKeyFile(): string {
  const f = join(dir, 'POOL')
  writeFileSync(f, randomBytes(64), { mode: 0o600 })
  return f
}

const REFUSAL = /^development mode \(no issuer, no iam\.issuers\) refuses the HTCondor signing key "broker1" at \S+\/data\/keys\/condor\/broker1: development mode did not make it/

// With no issuer, serve starts a development IAM that hands tokens for well-known users to anyone on this
// host. Signing with a key a pool trusts (imported, made by keys init for production, copied in) would let
// any local user exchange those for IDTOKENs the real pool accepts: development mode signs only with a key
// it made itself.
describe('development mode and a signing key it did not make', () => {
  it.each([
    ['keys import', () => ['keys', 'import', poolKeyFile(), '--name', 'broker1']],
    ['keys init', () => ['keys', 'init']],
  ])('refuses to start on a key from %s, and serves no token', async (_what, args) => {
    expect((await cli(args(), env)).code).toBe(0)
    await expect(startBroker(loadConfig({ env }), { log: silent })).rejects.toThrow(REFUSAL)
  })

  it('serve says so in one line and exits 78 (EX_CONFIG), which the systemd unit does not restart', async () => {
    expect((await cli(['keys', 'import', poolKeyFile(), '--name', 'broker1'], env)).code).toBe(0)
    const r = await cli(['serve'], env)
    expect(r.code).toBe(78)
    expect(r.err).toMatch(/^condor-token-broker: development mode \(no issuer, no iam\.issuers\) refuses the HTCondor signing key "broker1"[^\n]*$/)
  })

  it('refuses a key development mode made and someone then replaced', async () => {
    const first = await startE2e(env)
    await first.broker.close()
    writeFileSync(join(dir, 'data', 'keys', 'condor', 'broker1'), randomBytes(64), { mode: 0o600 })
    await expect(startBroker(loadConfig({ env }), { log: silent })).rejects.toThrow(REFUSAL)
  })

  it('starts again, as npm start does, on the key it made at its first start', async () => {
    const first = await startE2e(env)
    const kid = first.broker.services.keys.idtoken.kid
    await first.broker.close()
    const again = await startBroker(loadConfig({ env }), { log: silent })
    expect(again.services.keys.idtoken.kid).toBe(kid)
    await again.close()
  })

  // The other way round: IDTOKENs development mode signed for anyone on this host stay valid wherever its key
  // is later trusted. A data_dir started in development and then given a public issuer (or copied to the
  // production host, development.json with it) must not put that key before a pool.
  it('refuses, with a public issuer, the key development mode made (exit 78)', async () => {
    const first = await startE2e(env)
    await first.broker.close()
    const f = join(dir, 'broker.yaml')
    writeFileSync(f, `issuer: https://broker.example.org\ntrust_domain: pool.example.org\ndata_dir: ${join(dir, 'data')}\ntls:\n  mode: off\nlisten:\n  port: 0\niam:\n  issuers:\n    - issuer: https://iam.example.org/\n      audience: https://broker.example.org\n`)
    const r = await cli(['serve', '--config', f], {})
    expect(r.code).toBe(78)
    expect(r.err).toMatch(/^condor-token-broker: the HTCondor signing key "broker1" at \S+\/data\/keys\/condor\/broker1 was made by development mode[^\n]*$/)
  })

  // The mark belongs to the key from the moment it exists: a first start that made the key and then failed
  // (here on a keyring that is not JSON) must not leave a key development mode made that it then refuses.
  it('starts on the key it made at a first start that failed after making it', async () => {
    const ring = join(dir, 'data', 'keys', 'jwt', 'keyring.json')
    mkdirSync(dirname(ring), { recursive: true, mode: 0o700 })
    writeFileSync(ring, '{', { mode: 0o600 })
    await expect(startBroker(loadConfig({ env }), { log: silent })).rejects.toThrow(/keyring\.json is not valid JSON/)
    expect(existsSync(join(dir, 'data', 'keys', 'condor', 'broker1'))).toBe(true)
    rmSync(ring)
    const again = await startBroker(loadConfig({ env }), { log: silent })
    await again.close()
  })
})
