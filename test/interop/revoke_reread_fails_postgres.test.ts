// The CLI's revoke and lift on PostgreSQL when the re-read after the commit fails. The broker's role here may
// write every table but not read role_generations, which a jti revocation or a lift never writes and the
// re-read of the active revocations always reads: the change commits, then the read after it is refused.
// The command must say the change was made and exit 0: a failure exit invites a retry that revokes twice, or
// a lift retried into "already lifted".
import { join } from 'node:path'
import pg from 'pg'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { runCli } from '../../src/cli/main.ts'
import { startPostgres, type TestPostgres } from '../support/postgres.ts'
import { tempDir } from '../support/tmp.ts'

// A real PostgreSQL server started for this file on 127.0.0.1 (Debian package `postgresql`).
let server: TestPostgres
beforeAll(async () => { server = await startPostgres() }, 120_000)
afterAll(async () => { await server?.stop() })

async function sql<R extends pg.QueryResultRow>(dsn: string, text: string): Promise<R[]> {
  const client = new pg.Client({ connectionString: dsn })
  await client.connect()
  try { return (await client.query<R>(text)).rows } finally { await client.end() }
}

async function cli(env: NodeJS.ProcessEnv, ...argv: string[]) {
  const out: string[] = []
  const err: string[] = []
  const code = await runCli(argv, { out: (s) => out.push(s), err: (s) => err.push(s), env })
  return { code, out, err }
}

it('revoke and revoke lift whose re-read is refused report the committed change and exit 0', async () => {
  const dsn = await server.createDatabase('reread_refused')
  const env = { CTB_DATA_DIR: join(tempDir(), 'data'), CTB_TRUST_DOMAIN: 'pool.example.org', CTB_AUDIT_STORE: 'postgres', CTB_AUDIT_POSTGRES_DSN: dsn }
  expect((await cli(env, 'keys', 'init')).code).toBe(0)
  expect((await cli(env, 'token', 'create', '--identity', 'alice@pool.example.org', '--authz', 'READ')).code).toBe(0)
  await sql(dsn, 'CREATE ROLE writer LOGIN')
  await sql(dsn, 'GRANT CREATE, USAGE ON SCHEMA public TO writer')
  await sql(dsn, 'GRANT ALL ON ALL TABLES IN SCHEMA public TO writer')
  await sql(dsn, 'GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO writer')
  await sql(dsn, 'REVOKE SELECT ON role_generations FROM writer')
  const writer = { ...env, CTB_AUDIT_POSTGRES_DSN: dsn.replace('postgres://postgres@', 'postgres://writer@') }

  const made = await cli(writer, 'revoke', '--jti', 'j-reread', '--reason', 'laptop stolen')
  expect({ code: made.code, out: made.out[0] }).toMatchObject({ code: 0, out: expect.stringMatching(/^revoked jti j-reread \(id \d+\)/) })
  expect(made.err.join('\n')).toContain('re-reading the revocations failed')
  const rows = await sql<{ id: number; lifted_at: number | null }>(dsn, "SELECT id, lifted_at FROM revocations WHERE value = 'j-reread'")
  expect(rows).toHaveLength(1)

  const lifted = await cli(writer, 'revoke', 'lift', String(rows[0]!.id))
  expect({ code: lifted.code, out: lifted.out[0] }).toEqual({ code: 0, out: `lifted revocation ${rows[0]!.id} (jti j-reread)` })
  expect((await sql<{ lifted_at: number | null }>(dsn, `SELECT lifted_at FROM revocations WHERE id = ${rows[0]!.id}`))[0]!.lifted_at).not.toBeNull()
}, 90_000)
