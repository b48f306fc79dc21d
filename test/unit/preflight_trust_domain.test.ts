import { hostname } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { preflight } from '../../src/preflight.ts'
import { tempDir } from '../support/tmp.ts'

// An IDTOKEN's iss must be exactly the pool's TRUST_DOMAIN, or HTCondor silently skips the token (the
// glideinWMS #49 lesson). HTCondor 10+ defaults TRUST_DOMAIN to UID_DOMAIN, the central manager's full host
// name, which the broker's own host name almost never is: a public broker must be told it.
function config(env: Record<string, string>) {
  const dir = tempDir()
  return loadConfig({ env: { CTB_DATA_DIR: join(dir, 'data'), CTB_POLICY_DIR: 'policies', ...env } })
}
const ctx = (production: boolean) => ({ production, iamIssuer: 'https://iam.example.org/', log: silentLogger })

describe('preflight and trust_domain', () => {
  it('a public broker without trust_domain refuses to start, naming the setting', async () => {
    const c = config({ CTB_ISSUER: 'https://tokens.example.org', CTB_TLS_MODE: 'off' })
    const err = await preflight(c, ctx(true)).then(() => undefined, (e: unknown) => e as Error & { code?: string })
    expect(err?.message).toMatch(/trust_domain is not set: .*TRUST_DOMAIN/)
    expect(err?.message).not.toMatch(/^\s*at /m)
  })

  it('a public broker with trust_domain set passes that check', async () => {
    const c = config({ CTB_ISSUER: 'https://tokens.example.org', CTB_TLS_MODE: 'off', CTB_TRUST_DOMAIN: 'cm.pool.example.org' })
    const err = await preflight(c, ctx(true)).then(() => undefined, (e: unknown) => e as Error)
    expect(err?.message ?? '').not.toMatch(/trust_domain/)
  })

  it('development keeps the host-name default', async () => {
    const c = config({})
    expect(c.trust_domain).toBe(hostname())
    const err = await preflight(c, ctx(false)).then(() => undefined, (e: unknown) => e as Error)
    expect(err?.message ?? '').not.toMatch(/trust_domain/)
  })
})
