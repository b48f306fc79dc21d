import { join } from 'node:path'
import pg from 'pg'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { runCli } from '../../src/cli/main.ts'
import { ensureAuditMacKeyFile } from '../../src/keys/audit_mac_key.ts'
import { startPostgres, type TestPostgres } from '../support/postgres.ts'
import { tempDir } from '../support/tmp.ts'

// A real PostgreSQL server started for this file on 127.0.0.1 (Debian package `postgresql`).
let server: TestPostgres
beforeAll(async () => { server = await startPostgres() }, 120_000)
afterAll(async () => { await server?.stop() })

async function tables(dsn: string): Promise<string[]> {
  const client = new pg.Client({ connectionString: dsn })
  await client.connect()
  try {
    const r = await client.query<{ table_name: string }>("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1")
    return r.rows.map((row) => row.table_name)
  } finally { await client.end() }
}

// Pointed at a database the broker never used (a DSN naming the wrong one), audit verify created the whole
// schema there and printed "audit chain OK: 0 records", exit 0 with the MAC key at hand.
it('audit verify on a database with no broker schema creates nothing and fails in one line', async () => {
  const dsn = await server.createDatabase('not_the_broker')
  const dataDir = join(tempDir(), 'data')
  ensureAuditMacKeyFile(join(dataDir, 'keys', 'audit_mac.key'))
  const out: string[] = []
  const err: string[] = []
  const env = { CTB_DATA_DIR: dataDir, CTB_TRUST_DOMAIN: 'pool.example.org', CTB_AUDIT_STORE: 'postgres', CTB_AUDIT_POSTGRES_DSN: dsn }
  const code = await runCli(['audit', 'verify'], { out: (s) => out.push(s), err: (s) => err.push(s), env })
  expect({ code, out, err }).toEqual({
    code: 1, out: [],
    err: ['condor-token-broker: no audit log in the PostgreSQL database audit.postgres.dsn names (it holds no broker tables): check the DSN; audit verify only reads and creates none'],
  })
  expect(await tables(dsn)).toEqual([])
}, 60_000)
