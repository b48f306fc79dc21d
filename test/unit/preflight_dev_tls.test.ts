import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { preflight } from '../../src/preflight.ts'
import { ensureDevTls } from '../../src/tls/dev_ca.ts'
import { tempDir } from '../support/tmp.ts'

// tls.mode auto is refused with a public issuer; the same development certificate named as files (a
// development data_dir copied to the production host, tls.cert_file pointed at data/tls/server.crt) must
// be refused too: it names localhost, and only a client told to trust a development CA would accept it.
describe('preflight and the development certificate', () => {
  it('refuses the development CA\'s certificate as tls.cert_file with a public issuer, and only then', async () => {
    const dir = tempDir()
    const dev = await ensureDevTls(join(dir, 'devtls'))
    const env = {
      CTB_ISSUER: 'https://ctb.example.org', CTB_DATA_DIR: join(dir, 'data'), CTB_TRUST_DOMAIN: 'pool.example.org', CTB_POLICY_DIR: 'policies',
      CTB_TLS_MODE: 'files', CTB_TLS_CERT_FILE: dev.certFile, CTB_TLS_KEY_FILE: dev.keyFile,
    }
    const config = loadConfig({ env })
    const line = `tls.cert_file ${dev.certFile}: a development certificate (issued by the condor-token-broker development CA); a broker with a public issuer needs one from a CA its clients trust`
    const err = await preflight(config, { production: true, iamIssuer: 'https://iam.example.org/', log: silentLogger }).then(() => undefined, (e: unknown) => e as Error)
    expect(err?.message.split('\n').map((l) => l.trim())).toContain(line)

    const dev2 = await preflight(loadConfig({ env: { ...env, CTB_ISSUER: 'https://localhost:8443' } }), { production: false, iamIssuer: 'https://iam.example.org/', log: silentLogger })
      .then(() => undefined, (e: unknown) => e as Error)
    expect(dev2?.message ?? '').not.toContain('development certificate')
  })
})
