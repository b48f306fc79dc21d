import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { preflight } from '../../src/preflight.ts'
import { tempDir } from '../support/tmp.ts'

// The Vault-compatible listener hands out users' job tokens against a bearer X-Vault-Token, and HTCondor's
// Vault credmon only speaks https: plain HTTP is refused unless nothing off this host can reach it. A
// production broker (public issuer): a development one may not put the listener off loopback at all
// (EDEVLISTEN, preflight_development_listener.test.ts). Such a config lacks keys and an IAM too, so the
// refusal lists more problems (first code ENOIAM); only the lines about the listener are looked at.
function config(env: Record<string, string>) {
  const dir = tempDir()
  const file = join(dir, 'broker.yaml')
  writeFileSync(file, 'credentials:\n  enabled: true\n  providers: [{ name: cms, kind: iam, role: job }]\n  vault: { enabled: true, port: 0 }\n')
  return loadConfig({
    file,
    env: { CTB_ISSUER: 'https://broker.example.org', CTB_DATA_DIR: join(dir, 'data'), CTB_TRUST_DOMAIN: 'pool.example.org', CTB_POLICY_DIR: 'policies', ...env },
  })
}
const ctx = { production: true, iamIssuer: 'https://iam.example.org/', log: silentLogger }

async function refusal(env: Record<string, string>): Promise<{ vaultLines: string[] }> {
  const err = await preflight(config(env), ctx).then(() => undefined, (e: unknown) => e as Error)
  const lines = (err?.message ?? '').split('\n').map((l) => l.trim())
  return { vaultLines: lines.filter((l) => l.startsWith('credentials.vault.host')) }
}

describe('preflight and the Vault-compatible listener', () => {
  it.each(['0.0.0.0', '::', '192.0.2.7', 'broker.example.org'])('refuses tls.mode off with the listener on %s, in one line', async (host) => {
    const r = await refusal({ CTB_TLS_MODE: 'off', CTB_CREDENTIALS_VAULT_HOST: host })
    expect(r.vaultLines).toEqual([`credentials.vault.host ${host}: the Vault-compatible listener hands out job tokens and HTCondor's Vault credmon only speaks https; with tls.mode off it may only listen on a loopback address (use tls.mode files, or a TLS proxy on this host in front of a loopback listener)`])
  })

  it.each(['127.0.0.1', '::1', 'localhost'])('allows tls.mode off on the loopback address %s', async (host) => {
    expect((await refusal({ CTB_TLS_MODE: 'off', CTB_CREDENTIALS_VAULT_HOST: host })).vaultLines).toEqual([])
  })

  it('allows any host with TLS, and any tls.mode when the listener is disabled', async () => {
    expect((await refusal({ CTB_TLS_MODE: 'auto', CTB_CREDENTIALS_VAULT_HOST: '0.0.0.0' })).vaultLines).toEqual([])
    expect((await refusal({ CTB_TLS_MODE: 'off', CTB_CREDENTIALS_VAULT_ENABLED: 'false', CTB_CREDENTIALS_VAULT_HOST: '0.0.0.0' })).vaultLines).toEqual([])
  })
})
