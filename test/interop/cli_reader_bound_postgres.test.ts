// audit.postgres.query_timeout_seconds = 0 means no bound on serve's statements (docs/audit.md). A command that
// only reads took the same setting, so with 0 it waited as long as the server did: a cron'd `revoke list` or
// `audit verify` against a server that never answers (here: a table held by another session's lock, which
// PostgreSQL makes a statement wait on without end) hung for good. A reader's statements each cover a bounded
// chunk of the log, so 0 gives it the default bound (READER_QUERY_TIMEOUT_SECONDS): one line and exit 1.
import { join } from 'node:path'
import pg from 'pg'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { runCli } from '../../src/cli/main.ts'
import { READER_QUERY_TIMEOUT_SECONDS } from '../../src/storage/open_store.ts'
import { startPostgres, type TestPostgres } from '../support/postgres.ts'
import { tempDir } from '../support/tmp.ts'

let server: TestPostgres
beforeAll(async () => { server = await startPostgres() }, 120_000)
afterAll(async () => { await server?.stop() })

async function cli(env: NodeJS.ProcessEnv, ...argv: string[]) {
  const out: string[] = []
  const err: string[] = []
  const code = await runCli(argv, { out: (s) => out.push(s), err: (s) => err.push(s), env })
  return { code, out, err }
}

it('revoke list with query_timeout_seconds 0 on a table that never answers: one line, exit 1, within the reader bound', async () => {
  // The documented default: the bound an operator who set 0 for serve gets on a reader.
  expect(READER_QUERY_TIMEOUT_SECONDS).toBe(30)
  const dsn = await server.createDatabase('reader_bound')
  const env = { CTB_DATA_DIR: join(tempDir(), 'data'), CTB_TRUST_DOMAIN: 'pool.example.org', CTB_AUDIT_STORE: 'postgres', CTB_AUDIT_POSTGRES_DSN: dsn }
  expect((await cli(env, 'keys', 'init')).code).toBe(0)
  expect((await cli(env, 'token', 'create', '--identity', 'alice@pool.example.org', '--authz', 'READ')).code).toBe(0)
  const holder = new pg.Client({ connectionString: dsn })
  await holder.connect()
  await holder.query('BEGIN')
  await holder.query('LOCK TABLE revocations IN ACCESS EXCLUSIVE MODE')
  let released = false
  const release = async () => { if (!released) { released = true; await holder.query('ROLLBACK'); await holder.end() } }
  try {
    const started = performance.now()
    const run = cli({ ...env, CTB_AUDIT_POSTGRES_QUERY_TIMEOUT_SECONDS: '0' }, 'revoke', 'list')
    // Unbounded, the command would wait for the lock: release it after the bound and some, so the test ends.
    const late = new Promise<'still waiting'>((r) => setTimeout(() => r('still waiting'), (READER_QUERY_TIMEOUT_SECONDS + 15) * 1000))
    const first = await Promise.race([run, late])
    const took = (performance.now() - started) / 1000
    await release()
    const r = first === 'still waiting' ? await run.then(() => 'still waiting' as const) : first
    expect(r).not.toBe('still waiting')
    if (r === 'still waiting') return
    expect(r.code).toBe(1)
    expect(r.err).toHaveLength(1)
    expect(r.err[0]).toMatch(/^condor-token-broker: the audit store cannot be read right now \(Query read timeout\)$/)
    expect(took).toBeGreaterThanOrEqual(READER_QUERY_TIMEOUT_SECONDS - 1)
  } finally {
    await release()
  }
}, 120_000)
