import { join } from 'node:path'
import pg from 'pg'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { runCli } from '../../src/cli/main.ts'
import { checkSchemaVersion } from '../../src/storage/reader_checks.ts'
import { startPostgres, type TestPostgres } from '../support/postgres.ts'
import { tempDir } from '../support/tmp.ts'

// A `pilot-enrolment` revocation row means nothing to a replica from before that kind: it would not enforce it
// (the group's pilots renewing and redeeming there) and would take its record for one the broker never wrote.
// Such a replica must refuse the database, as it refuses any newer than it knows: a schema step marks it.
// A real PostgreSQL server started for this file on 127.0.0.1 (Debian package `postgresql`).
let server: TestPostgres
beforeAll(async () => { server = await startPostgres() }, 120_000)
afterAll(async () => { await server?.stop() })

// The PostgreSQL schema version of the brokers before the pilot-enrolment kind (9573253^, src/storage/postgres_store.ts).
const BEFORE_PILOT_ENROLMENT = 13

it('a PostgreSQL log this broker wrote is refused by a replica from before pilot-enrolment revocations', async () => {
  const dsn = await server.createDatabase('enrolment_schema')
  const env = { CTB_DATA_DIR: join(tempDir(), 'data'), CTB_TRUST_DOMAIN: 'pool.example.org', CTB_AUDIT_STORE: 'postgres', CTB_AUDIT_POSTGRES_DSN: dsn }
  const err: string[] = []
  expect(await runCli(['keys', 'init'], { out: () => {}, err: (s) => err.push(s), env }), err.join('\n')).toBe(0)
  expect(await runCli(['token', 'create', '--identity', 'alice@pool.example.org', '--authz', 'READ'], { out: () => {}, err: (s) => err.push(s), env }), err.join('\n')).toBe(0)
  const client = new pg.Client({ connectionString: dsn })
  await client.connect()
  let version: number
  try { version = (await client.query<{ version: number }>('SELECT version FROM ctb_schema_version')).rows[0]!.version } finally { await client.end() }
  expect(() => checkSchemaVersion(version, BEFORE_PILOT_ENROLMENT, 'write')).toThrow(/newer than this broker knows \(13\)/)
}, 60_000)
