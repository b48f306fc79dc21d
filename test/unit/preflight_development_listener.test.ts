import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { preflight } from '../../src/preflight.ts'
import { isProduction } from '../../src/production.ts'
import { tempDir } from '../support/tmp.ts'

// A loopback issuer (the default https://localhost:<port> when `issuer` is left out) is development mode:
// keys made on demand, IAM audiences unchecked, the development IAM and certificate. That is sound only
// while nothing off this host can reach the listener. A broker.yaml that forgets `issuer` on a host (or in
// the container image, which sets CTB_LISTEN_HOST=0.0.0.0) serving other hosts must not start that way.
function config(env: Record<string, string>, yaml?: string) {
  const dir = tempDir()
  const file = yaml === undefined ? undefined : join(dir, 'broker.yaml')
  if (file) writeFileSync(file, yaml!)
  return loadConfig({ file, env: { CTB_DATA_DIR: join(dir, 'data'), CTB_TRUST_DOMAIN: 'pool.example.org', CTB_POLICY_DIR: 'policies', ...env } })
}

async function refusal(env: Record<string, string>, yaml?: string) {
  const c = config(env, yaml)
  return preflight(c, { production: isProduction(c), iamIssuer: 'https://iam.example.org/', log: silentLogger })
    .then(() => undefined, (e: unknown) => e as Error & { code?: string })
}

describe('preflight and a development broker reachable from other hosts', () => {
  it.each(['0.0.0.0', '::', '192.0.2.7', 'broker.example.org', '::ffff:192.0.2.7', '::ffff:0.0.0.0'])('refuses the default (loopback) issuer with listen.host %s, in one line', async (host) => {
    const err = await refusal({ CTB_LISTEN_HOST: host })
    expect(err?.code).toBe('EDEVLISTEN')
    expect(err?.message).toBe(`listen.host ${host} is reachable from other hosts, but the issuer https://localhost:8443 is a loopback URL, which is development mode (keys created on demand, IAM audiences unchecked, development IAM and certificate); set issuer to the broker's public https URL, or listen on a loopback address`)
  })

  it('names a configured loopback issuer as it is', async () => {
    const err = await refusal({ CTB_LISTEN_HOST: '0.0.0.0', CTB_ISSUER: 'https://127.0.0.1:9443' })
    expect(err?.message).toContain('the issuer https://127.0.0.1:9443 is a loopback URL')
  })

  // The same loopback addresses written as Node's listen() takes them too: IPv4-mapped (RFC 4291 §2.5.5.2),
  // ::1 in full (RFC 4291 §2.2), and localhost in capitals (DNS names are case-insensitive, RFC 4343).
  it.each(['127.0.0.1', '127.0.0.2', '::1', 'localhost', '::ffff:127.0.0.1', '0:0:0:0:0:0:0:1', 'LOCALHOST'])('allows a loopback issuer on the loopback address %s', async (host) => {
    expect(await refusal({ CTB_LISTEN_HOST: host })).toBeUndefined()
  })

  // The Vault-compatible listener is a second way into the same development broker: it hands out the job
  // tokens of users whom the development IAM vouches for to anyone on this host. Other hosts must not reach it
  // either, whatever the TLS mode (tls.mode auto serves the development certificate).
  const vault = 'credentials:\n  enabled: true\n  providers: [{ name: cms, kind: iam, role: job }]\n  vault: { enabled: true, port: 0 }\ntls: { mode: auto }\n'
  it.each(['0.0.0.0', '::', '192.0.2.7', 'broker.example.org'])('refuses the default (loopback) issuer with credentials.vault.host %s, in one line', async (host) => {
    const err = await refusal({ CTB_CREDENTIALS_VAULT_HOST: host }, vault)
    expect(err?.code).toBe('EDEVLISTEN')
    expect(err?.message).toBe(`credentials.vault.host ${host} is reachable from other hosts, but the issuer https://localhost:8443 is a loopback URL, which is development mode (keys created on demand, IAM audiences unchecked, development IAM and certificate), and the Vault-compatible listener hands out job tokens; set issuer to the broker's public https URL, or credentials.vault.host to a loopback address`)
  })

  it.each(['127.0.0.1', '::1', 'localhost'])('allows a loopback issuer with credentials.vault.host %s', async (host) => {
    expect(await refusal({ CTB_CREDENTIALS_VAULT_HOST: host }, vault)).toBeUndefined()
  })
})
