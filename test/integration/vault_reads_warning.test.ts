import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { expect, it } from 'vitest'
import { loadConfig } from '../../src/config.ts'
import { createLogger } from '../../src/lib/logger.ts'
import { startBroker } from '../../src/server.ts'
import { tempDir } from '../support/tmp.ts'

/**
 * With the Vault-compatible listener on and no grant whose fetched_by says vault_reads: true, every read is
 * refused "permission denied", on which HTCondor's Vault credmon deletes the user's .top: the broker said
 * nothing of it until users' credentials vanished. It warns at start and at each reload that leaves none.
 */
const WARNING = 'the Vault-compatible listener is enabled but no grant in the policy sets fetched_by.vault_reads: true: every Vault read will be refused (403 permission denied)'

it('warns at start and after a reload while no grant allows Vault reads, and not while one does', async () => {
  const dir = tempDir('ctb-vaultwarn-')
  const policyDir = join(dir, 'policies')
  // The shipped policies: their job-credentials grant is fetched by credds only (no vault_reads).
  cpSync(join(import.meta.dirname, '../../policies'), policyDir, { recursive: true })
  const usersFile = join(policyDir, '30-users.yaml')
  const users = readFileSync(usersFile, 'utf8')
  expect(users).toContain('fetched_by: { roles: [credd] }')
  const file = join(dir, 'broker.yaml')
  writeFileSync(file, `policy_dir: ${policyDir}
credentials:
  enabled: true
  providers:
    - { name: cms, kind: iam, role: job-credentials }
  vault: { enabled: true, port: 0 }
`)
  const lines: Record<string, unknown>[] = []
  const log = createLogger((l) => { lines.push(JSON.parse(l) as Record<string, unknown>) })
  const env = { CTB_CONFIG: file, CTB_DATA_DIR: join(dir, 'data'), CTB_LISTEN_PORT: '0', CTB_DEV_IAM_PORT: '0', CTB_TRUST_DOMAIN: 'pool.example.org', CTB_POLICY_WATCH: 'false' }
  const broker = await startBroker(loadConfig({ env }), { log })
  const warnings = () => lines.filter((l) => l.msg === WARNING)
  try {
    expect(warnings()).toHaveLength(1)
    expect(warnings()[0]).toMatchObject({ level: 'warn', digest: broker.services.policy.current.digest })

    writeFileSync(usersFile, users.replace('fetched_by: { roles: [credd] }', 'fetched_by: { roles: [credd], vault_reads: true }'))
    expect(broker.services.policy.reload('manual')).toMatchObject({ ok: true })
    expect(warnings()).toHaveLength(1)

    writeFileSync(usersFile, users)
    expect(broker.services.policy.reload('sighup')).toMatchObject({ ok: true })
    expect(warnings()).toHaveLength(2)
    expect(warnings()[1]).toMatchObject({ level: 'warn', trigger: 'sighup', digest: broker.services.policy.current.digest })
  } finally {
    await broker.close()
    rmSync(dir, { recursive: true, force: true })
  }
}, 30_000)
