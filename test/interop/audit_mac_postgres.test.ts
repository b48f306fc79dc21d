import { chmodSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { runCli } from '../../src/cli/main.ts'
import { PostgresStore } from '../../src/storage/postgres_store.ts'
import { auditMacScenarios } from '../integration/audit_mac.scenarios.ts'
import { startPostgres, type TestPostgres } from '../support/postgres.ts'
import { tempDir } from '../support/tmp.ts'

// A real PostgreSQL server started for this file on 127.0.0.1 (Debian package `postgresql`).
let server: TestPostgres
beforeAll(async () => { server = await startPostgres() }, 120_000)
afterAll(async () => { await server?.stop() })

let n = 0
let dsn = ''

auditMacScenarios('postgres', {
  async fresh() { dsn = await server.createDatabase(`mac_${++n}`) },
  async open(mac) { return PostgresStore.open({ dsn, ...(mac ? { auditMac: mac } : {}) }) },
  async sql(text, params = []) {
    const store = await PostgresStore.open({ dsn })
    try { return (await store.sql(text, params)).rows as Array<Record<string, unknown>> } finally { await store.close() }
  },
  async downgrade() {
    await this.sql('DROP INDEX audit_macs_started')
    await this.sql('ALTER TABLE audit_log DROP COLUMN mac')
    await this.sql('UPDATE ctb_schema_version SET version = 10')
  },
  async auditVerify(key) {
    const dataDir = join(tempDir(), 'data')
    const file = join(dataDir, 'keys', 'audit_mac.key')
    mkdirSync(join(dataDir, 'keys'), { recursive: true, mode: 0o700 })
    rmSync(file, { force: true })
    writeFileSync(file, `${(key ?? Buffer.alloc(32)).toString('base64')}\n`, { mode: 0o600 })
    if (!key) chmodSync(file, 0o644)
    const out: string[] = []
    const env = { CTB_DATA_DIR: dataDir, CTB_TRUST_DOMAIN: 'pool.example.org', CTB_AUDIT_STORE: 'postgres', CTB_AUDIT_POSTGRES_DSN: dsn }
    const code = await runCli(['audit', 'verify'], { out: (s) => out.push(s), err: () => {}, env })
    return { code, out: out.join('\n') }
  },
})

it('outside production a lost audit MAC key is not made up anew once the log carries MACs: reads report them unchecked, writes are refused', async () => {
  dsn = await server.createDatabase(`mac_${++n}`)
  const dataDir = join(tempDir(), 'data')
  const keyPath = join(dataDir, 'keys', 'audit_mac.key')
  const env = { CTB_DATA_DIR: dataDir, CTB_TRUST_DOMAIN: 'pool.example.org', CTB_AUDIT_STORE: 'postgres', CTB_AUDIT_POSTGRES_DSN: dsn }
  const cli = async (...argv: string[]) => {
    const out: string[] = []
    const err: string[] = []
    const code = await runCli(argv, { out: (s) => out.push(s), err: (s) => err.push(s), env })
    return { code, out: out.join('\n'), err: err.join('\n') }
  }
  // A fresh database has no MACs: the first write makes the key (seq 1 opens the MAC era).
  expect((await cli('revoke', '--jti', 'jti-1', '--reason', 'stolen')).code).toBe(0)
  rmSync(keyPath)
  const v = await cli('audit', 'verify')
  expect([v.code, v.out.split('\n')[1]]).toEqual([3, expect.stringMatching(/^audit MACs UNCHECKED: no audit MAC key/)])
  expect(existsSync(keyPath)).toBe(false)
  const w = await cli('revoke', '--jti', 'jti-2', '--reason', 'stolen')
  expect([w.code, w.err]).toEqual([1, `condor-token-broker: the audit MAC key file ${keyPath} is missing, but the audit log carries MACs since seq 1: restore the key file from a backup (a new key would leave every MAC'd record failing its check); nothing was written`])
  expect(existsSync(keyPath)).toBe(false)
})
