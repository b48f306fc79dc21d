import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { initPoolCa } from '../../src/ca/pool_ca.ts'
import { caDir, loadConfig } from '../../src/config.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { preflight } from '../../src/preflight.ts'
import { tempDir } from '../support/tmp.ts'

// The CRL is built from certificate.revoked audit records: pruning one before its certificate expires
// would quietly take a revoked certificate off the CRL, so serve must refuse such a retention.
function config(env: Record<string, string>) {
  return loadConfig({ env: { CTB_DATA_DIR: join(tempDir(), 'data'), CTB_TRUST_DOMAIN: 'pool.example.org', CTB_POLICY_DIR: 'policies', ...env } })
}
const ctx = { production: false, iamIssuer: 'https://iam.example.org/', log: silentLogger }

describe('preflight and the pool CA', () => {
  it('refuses an audit retention shorter than the longest host certificate when the pool CA exists', async () => {
    const c = config({ CTB_AUDIT_RETENTION_DAYS: '3', CTB_CA_MAX_LIFETIME: '7d' })
    await initPoolCa(caDir(c), { name: 'test CA', now: 1_800_000_000 })
    await expect(preflight(c, ctx)).rejects.toThrow(/audit\.retention_days \(3\) must cover ca\.max_lifetime \(604800 s\)/)
  })

  it('accepts it with a retention that covers it, or with no pool CA', async () => {
    const covered = config({ CTB_AUDIT_RETENTION_DAYS: '7', CTB_CA_MAX_LIFETIME: '7d' })
    await initPoolCa(caDir(covered), { name: 'test CA', now: 1_800_000_000 })
    await expect(preflight(covered, ctx)).resolves.toBeUndefined()
    await expect(preflight(config({ CTB_AUDIT_RETENTION_DAYS: '3', CTB_CA_MAX_LIFETIME: '7d' }), ctx)).resolves.toBeUndefined()
  })
})
