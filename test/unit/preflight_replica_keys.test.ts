import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.ts'
import { auditMacKeyFile, ensureAuditMacKeyFile } from '../../src/keys/audit_mac_key.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { preflight } from '../../src/preflight.ts'
import { tempDir } from '../support/tmp.ts'

// A second replica on PostgreSQL must sign with the first one's keys: the collector holds one broker1
// file, and verifiers fetch /jwks from whichever replica answers. An admin who copied the audit MAC key
// (as the upgrade steps say) and starts the second replica must not be told to run "keys init" there,
// which would make a second, different HTCondor key and SciToken keyring.
function production(env: Record<string, string>) {
  const dir = tempDir()
  const config = loadConfig({ env: {
    CTB_DATA_DIR: join(dir, 'data'), CTB_POLICY_DIR: 'policies', CTB_ISSUER: 'https://tokens.example.org',
    CTB_TRUST_DOMAIN: 'pool.example.org', CTB_TLS_MODE: 'off', ...env,
  } })
  ensureAuditMacKeyFile(auditMacKeyFile(config))
  return config
}
const ctx = { production: true, iamIssuer: 'https://iam.example.org/', log: silentLogger }
const refusal = (c: ReturnType<typeof loadConfig>) => preflight(c, ctx).then(() => '', (e: unknown) => (e as Error).message)

describe('preflight: a replica on PostgreSQL without the HTCondor key', () => {
  it('names copying the first replica\'s keys directory, not keys init alone', async () => {
    const c = production({ CTB_AUDIT_STORE: 'postgres', CTB_AUDIT_POSTGRES_DSN: 'postgres://broker@127.0.0.1:1/broker' })
    // one line per problem (this config also lacks an IAM issuer): the key's line carries the remedy
    const line = (await refusal(c)).split('\n').find((l) => l.includes('HTCondor signing key')) ?? ''
    expect(line).toContain(`copy ${join(c.data_dir, 'keys')} from the replica that ran "condor-token-broker keys init"`)
    expect(line).toMatch(/never run keys init on a second replica/)
  })

  it('one broker on SQLite is still told to run keys init', async () => {
    const message = await refusal(production({}))
    expect(message).toMatch(/run "condor-token-broker keys init" to create it/)
    expect(message).not.toMatch(/replica/)
  })
})
