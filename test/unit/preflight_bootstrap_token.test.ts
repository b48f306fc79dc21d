import { symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.ts'
import { silentLogger } from '../../src/lib/logger.ts'
import { preflight } from '../../src/preflight.ts'
import { tempDir } from '../support/tmp.ts'

// admin.bootstrap_token_file is created when missing. Where it cannot be (a read-only /etc under the systemd
// unit's ProtectSystem=strict, a path through a file), serve must stop before it starts anything, naming the
// field, not with "internal error: EEXIST: ... mkdir" after the audit log and keys are open.
function config(bootstrapFile: string, env: Record<string, string> = {}) {
  const dir = tempDir()
  return loadConfig({
    env: { CTB_ISSUER: 'https://localhost:8443', CTB_DATA_DIR: join(dir, 'data'), CTB_TRUST_DOMAIN: 'pool.example.org', CTB_POLICY_DIR: 'policies', CTB_ADMIN_BOOTSTRAP_TOKEN_FILE: bootstrapFile, ...env },
  })
}
const ctx = { production: false, iamIssuer: 'https://iam.example.org/', log: silentLogger }

describe('preflight and admin.bootstrap_token_file', () => {
  it('refuses a missing file that cannot be created, naming the field', async () => {
    const dir = tempDir()
    const plain = join(dir, 'broker.yaml')
    writeFileSync(plain, 'x')
    const err = await preflight(config(join(plain, 'admin.token')), ctx).then(() => undefined, (e: unknown) => e as Error & { code?: string })
    expect(err?.code).toBe('EADMINTOKEN')
    expect(err?.message).toBe(`admin.bootstrap_token_file ${join(plain, 'admin.token')} does not exist and cannot be created: ${plain} is not a directory`)
  })

  it('accepts a missing file in a directory it can create', async () => {
    await expect(preflight(config(join(tempDir(), 'etc', 'admin.token')), ctx)).resolves.toBeUndefined()
  })

  // metrics.bearer_token_file is created the same way, with the same trap.
  it('refuses a metrics bearer token file that cannot be created, naming the field', async () => {
    const dir = tempDir()
    const plain = join(dir, 'broker.yaml')
    writeFileSync(plain, 'x')
    const err = await preflight(config(join(tempDir(), 'admin.token'), { CTB_METRICS_AUTH: 'bearer', CTB_METRICS_BEARER_TOKEN_FILE: join(plain, 'metrics.token') }), ctx)
      .then(() => undefined, (e: unknown) => e as Error & { code?: string })
    expect(err?.code).toBe('EMETRICSTOKEN')
    expect(err?.message).toBe(`metrics.bearer_token_file ${join(plain, 'metrics.token')} does not exist and cannot be created: ${plain} is not a directory`)
  })
})

// metrics.auth "bearer" exists so that Prometheus holds a token that opens /metrics and nothing else. Named
// as the admin bootstrap token's file, or a copy of it, the scraper's credentials_file is an admin token:
// whoever reads it there can revoke, read the audit log and lift revocations.
describe('preflight and a metrics bearer token that is the admin bootstrap token', () => {
  const line = 'metrics.bearer_token_file holds the admin bootstrap token (admin.bootstrap_token_file): whoever scrapes /metrics with it would be an admin; give metrics a token of its own (a missing file is created)'

  async function refusal(adminFile: string, metricsFile: string) {
    return preflight(config(adminFile, { CTB_METRICS_AUTH: 'bearer', CTB_METRICS_BEARER_TOKEN_FILE: metricsFile }), ctx)
      .then(() => undefined, (e: unknown) => e as Error & { code?: string })
  }

  it('refuses the same path, before either file exists', async () => {
    const file = join(tempDir(), 'admin.token')
    const err = await refusal(file, file)
    expect(err?.code).toBe('EMETRICSTOKEN')
    expect(err?.message).toBe(line)
  })

  it('refuses another path to the same file (a symlink)', async () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'admin.token'), `${'a'.repeat(43)}\n`, { mode: 0o600 })
    symlinkSync(join(dir, 'admin.token'), join(dir, 'metrics.token'))
    expect((await refusal(join(dir, 'admin.token'), join(dir, 'metrics.token')))?.message).toBe(line)
  })

  it('refuses a copy of the admin token', async () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'admin.token'), `${'b'.repeat(43)}\n`, { mode: 0o600 })
    writeFileSync(join(dir, 'metrics.token'), 'b'.repeat(43), { mode: 0o600 })
    expect((await refusal(join(dir, 'admin.token'), join(dir, 'metrics.token')))?.message).toBe(line)
  })

  it('accepts two different tokens', async () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'admin.token'), `${'c'.repeat(43)}\n`, { mode: 0o600 })
    writeFileSync(join(dir, 'metrics.token'), `${'d'.repeat(43)}\n`, { mode: 0o600 })
    expect(await refusal(join(dir, 'admin.token'), join(dir, 'metrics.token'))).toBeUndefined()
  })
})
