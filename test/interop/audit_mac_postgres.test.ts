import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll } from 'vitest'
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
