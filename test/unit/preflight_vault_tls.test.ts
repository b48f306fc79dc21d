import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { preflight } from '../../src/preflight.ts'
import { tempDir } from '../support/tmp.ts'

// The Vault-compatible listener hands out users' job tokens against a bearer X-Vault-Token, and HTCondor's
// Vault credmon only speaks https: plain HTTP is refused unless nothing off this host can reach it.
function config(env: Record<string, string>) {
  const dir = tempDir()
  const file = join(dir, 'broker.yaml')
  writeFileSync(file, 'credentials:\n  enabled: true\n  providers: [{ name: cms, kind: iam, role: job }]\n  vault: { enabled: true, port: 0 }\n')
  return loadConfig({
    file,
    env: { CTB_ISSUER: 'https://localhost:8443', CTB_DATA_DIR: join(dir, 'data'), CTB_TRUST_DOMAIN: 'pool.example.org', CTB_POLICY_DIR: 'policies', ...env },
  })
}
const ctx = { production: false, iamIssuer: 'https://iam.example.org/', log: silentLogger }

describe('preflight and the Vault-compatible listener', () => {
  it.each(['0.0.0.0', '::', '192.0.2.7', 'broker.example.org'])('refuses tls.mode off with the listener on %s, in one line', async (host) => {
    const c = config({ CTB_TLS_MODE: 'off', CTB_CREDENTIALS_VAULT_HOST: host })
    const err = await preflight(c, ctx).then(() => undefined, (e: unknown) => e as Error & { code?: string })
    expect(err?.message).toBe(`credentials.vault.host ${host}: the Vault-compatible listener hands out job tokens and HTCondor's Vault credmon only speaks https; with tls.mode off it may only listen on a loopback address (use tls.mode files, or a TLS proxy on this host in front of a loopback listener)`)
    expect(err?.code).toBe('EVAULTTLS')
  })

  it.each(['127.0.0.1', '::1', 'localhost'])('allows tls.mode off on the loopback address %s', async (host) => {
    await expect(preflight(config({ CTB_TLS_MODE: 'off', CTB_CREDENTIALS_VAULT_HOST: host }), ctx)).resolves.toBeUndefined()
  })

  it('allows any host with TLS, and any tls.mode when the listener is disabled', async () => {
    await expect(preflight(config({ CTB_TLS_MODE: 'auto', CTB_CREDENTIALS_VAULT_HOST: '0.0.0.0' }), ctx)).resolves.toBeUndefined()
    await expect(preflight(config({ CTB_TLS_MODE: 'off', CTB_CREDENTIALS_VAULT_ENABLED: 'false', CTB_CREDENTIALS_VAULT_HOST: '0.0.0.0' }), ctx)).resolves.toBeUndefined()
  })
})
