import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import pg from 'pg'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { cli } from '../support/cli.ts'
import { startPostgres, type TestPostgres } from '../support/postgres.ts'
import { tempDir } from '../support/tmp.ts'

// A real PostgreSQL server started for this file on 127.0.0.1 (Debian package `postgresql`).
let server: TestPostgres
beforeAll(async () => { server = await startPostgres() }, 120_000)
afterAll(async () => { await server?.stop() })

async function sql(dsn: string, text: string): Promise<void> {
  const client = new pg.Client({ connectionString: dsn })
  await client.connect()
  try { await client.query(text) } finally { await client.end() }
}

const HIDDEN_TEXT = 'revocation 1 (site "cloud-a") is in force in the revocations table but the read of the active revocations leaves it out (an index or view disagreeing with the table: a broker starting now would not enforce it)'

// A view put in the table's place that answers the query for the active entries without the site rows
// (it tells that query by its text), while a read of the whole table shows them: every check passed,
// and `revoke condor` rendered SEC_TOKEN_REVOCATION_EXPR without the site. The checks now run that very
// query beside the whole-table read and refuse the difference.
it('a view hiding a site revocation from the active read fails audit verify and revoke condor', async () => {
  const dsn = await server.createDatabase('hidden_row')
  const config = join(tempDir(), 'broker.yaml')
  writeFileSync(config, 'policy:\n  vars:\n    IAM_ISSUER: https://iam.example.org/\n')
  const env = { ...process.env, CTB_CONFIG: config, CTB_DATA_DIR: join(tempDir(), 'data'), CTB_TRUST_DOMAIN: 'pool.example.org', CTB_AUDIT_STORE: 'postgres', CTB_AUDIT_POSTGRES_DSN: dsn }
  expect((await cli(['revoke', '--site', 'cloud-a', '--reason', 'compromised'], env)).code).toBe(0)
  expect((await cli(['revoke', '--jti', 'j-1', '--exp', String(Math.floor(Date.now() / 1000) + 600)], env)).code).toBe(0)
  expect((await cli(['audit', 'verify'], env)).out).toContain('revocations OK: 2 rows match the audit chain')

  await sql(dsn, `ALTER TABLE revocations RENAME TO revocation_rows;
    CREATE VIEW revocations AS SELECT * FROM revocation_rows
      WHERE NOT (kind = 'site' AND current_query() LIKE '%lifted_at IS NULL%')`)
  // The view really hides the row from the active entries a fresh process reads (`revoke list`).
  const listed = await cli(['revoke', 'list'], env)
  expect(listed.out).toContain('j-1')
  expect(listed.out).not.toContain('cloud-a')
  expect((await cli(['revoke', 'list', '--all'], env)).out).toContain('cloud-a')

  const verify = await cli(['audit', 'verify'], env)
  expect(verify.code).toBe(1)
  expect(verify.out).toContain(`revocations DIFFER: ${HIDDEN_TEXT}`)

  const condor = await cli(['revoke', 'condor'], env)
  expect({ code: condor.code, out: condor.out, err: condor.err }).toEqual({
    code: 1, out: '',
    err: `condor-token-broker: revocations differ from the audit chain: ${HIDDEN_TEXT}; run "audit verify" and restore the revocations table from a backup`,
  })
}, 90_000)
