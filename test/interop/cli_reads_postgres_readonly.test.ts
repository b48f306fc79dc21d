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

/** Each command that only reads the audit log. */
const READERS = [['audit', 'verify'], ['audit', 'list'], ['audit', 'export'], ['revoke', 'list'], ['revoke', 'condor'], ['revoke', '--sub', 'alice@pool.example.org', '--dry-run'], ['pilot', 'list'], ['credential', 'list']]

async function brokerLog(name: string) {
  const dsn = await server.createDatabase(name)
  const dataDir = join(tempDir(), 'data')
  const env = { CTB_DATA_DIR: dataDir, CTB_TRUST_DOMAIN: 'pool.example.org', CTB_AUDIT_STORE: 'postgres', CTB_AUDIT_POSTGRES_DSN: dsn }
  expect((await cli(env, 'keys', 'init')).code).toBe(0)
  expect((await cli(env, 'token', 'create', '--identity', 'alice@pool.example.org', '--authz', 'READ')).code).toBe(0)
  return { dsn, env }
}

// An auditor is given a role that may only SELECT: audit verify created the schema-version table and took
// the migration lock as a writer does, so it failed for want of CREATE on the schema.
it('a role that may only SELECT runs every reading command', async () => {
  const { dsn, env } = await brokerLog('ro_role')
  await sql(dsn, 'CREATE ROLE auditor LOGIN')
  await sql(dsn, 'GRANT SELECT ON ALL TABLES IN SCHEMA public TO auditor')
  const auditorDsn = dsn.replace('postgres://postgres@', 'postgres://auditor@')
  for (const argv of READERS) {
    const r = await cli({ ...env, CTB_AUDIT_POSTGRES_DSN: auditorDsn }, ...argv)
    expect({ argv, code: r.code, err: r.err.filter((l) => !l.startsWith('(')) }).toEqual({ argv, code: 0, err: [] })
  }
  const v = await cli({ ...env, CTB_AUDIT_POSTGRES_DSN: auditorDsn }, 'audit', 'verify')
  // The first write's audit.macs_started statement (docs/audit.md) and the token's record.
  expect(v.out[0]).toMatch(/^audit chain OK: 2 records, seq 1\.\.2, /)
}, 60_000)

it('a log of an older schema is refused by the readers and left unmigrated', async () => {
  const { dsn, env } = await brokerLog('older_schema')
  const [{ version }] = await sql<{ version: number }>(dsn, 'SELECT version FROM ctb_schema_version')
  await sql(dsn, `UPDATE ctb_schema_version SET version = ${version! - 1}`)
  for (const argv of READERS) {
    const r = await cli(env, ...argv)
    expect({ argv, code: r.code, out: r.out, err: r.err }).toEqual({
      argv, code: 1, out: [],
      err: [`condor-token-broker: the audit database has schema version ${version! - 1}, older than this broker's (${version}); a command that only reads does not migrate it: start this version's serve (which migrates) first, or read it with the version that wrote it`],
    })
  }
  expect(await sql(dsn, 'SELECT version FROM ctb_schema_version')).toEqual([{ version: version! - 1 }])
}, 60_000)

it('the readers other than audit create no schema in a database without one', async () => {
  const dsn = await server.createDatabase('not_the_broker')
  const keys = { CTB_DATA_DIR: join(tempDir(), 'data'), CTB_TRUST_DOMAIN: 'pool.example.org' }
  // keys init on the embedded store: on PostgreSQL it opens the log (as a writer) to ask where its MACs began.
  expect((await cli(keys, 'keys', 'init')).code).toBe(0)
  const env = { ...keys, CTB_AUDIT_STORE: 'postgres', CTB_AUDIT_POSTGRES_DSN: dsn }
  for (const argv of READERS.filter((a) => a[0] !== 'audit')) {
    const r = await cli(env, ...argv)
    expect({ argv, code: r.code, err: r.err }).toEqual({
      argv, code: 1,
      err: ['condor-token-broker: no audit log in the PostgreSQL database audit.postgres.dsn names (it holds no broker tables): check the DSN; a command that only reads creates none'],
    })
  }
  expect(await sql(dsn, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")).toEqual([])
}, 60_000)

// The reader's read-only session must hold whatever the DSN says: a DSN naming its own `options` (a
// search_path, say) replaced the read-only setting (pg takes the DSN's over the pool's), and the setting
// replaced the PGOPTIONS an operator gives every broker process, so the reader looked in another schema.
it('a reader stays read-only when the DSN carries options of its own', async () => {
  const { dsn } = await brokerLog('ro_dsn_options')
  const { PostgresStore } = await import('../../src/storage/postgres_store.ts')
  const store = await PostgresStore.open({ dsn: `${dsn}?options=${encodeURIComponent('-c search_path=public')}`, readOnly: true })
  try {
    await expect(store.record({ type: 'token.denied', time: 1_700_000_000, decision: 'deny', reason: 'a write a reader must not make' }))
      .rejects.toThrow(/read-only transaction/)
  } finally {
    await store.close()
  }
  expect(await sql(dsn, "SELECT count(*)::int AS n FROM audit_log WHERE body LIKE '%a write a reader must not make%'")).toEqual([{ n: 0 }])
}, 60_000)

it('a reader honours the search_path PGOPTIONS sets, as serve does', async () => {
  const dsn = await server.createDatabase('pgoptions_schema')
  await sql(dsn, 'CREATE SCHEMA ctb')
  const before = process.env.PGOPTIONS
  process.env.PGOPTIONS = '-c search_path=ctb'
  try {
    const { PostgresStore } = await import('../../src/storage/postgres_store.ts')
    // Writer first, as serve: the schema lands in ctb, where PGOPTIONS points.
    await (await PostgresStore.open({ dsn })).close()
    expect(await sql(dsn, "SELECT table_schema FROM information_schema.tables WHERE table_name = 'ctb_schema_version'")).toEqual([{ table_schema: 'ctb' }])
    const reader = await PostgresStore.open({ dsn, readOnly: true })
    try {
      expect((await reader.query({ limit: 1 })).records).toEqual([])
      await expect(reader.record({ type: 'token.denied', time: 1_700_000_000, decision: 'deny', reason: 'x' })).rejects.toThrow(/read-only transaction/)
    } finally {
      await reader.close()
    }
  } finally {
    if (before === undefined) delete process.env.PGOPTIONS
    else process.env.PGOPTIONS = before
  }
}, 60_000)
