import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'

// The real binary in a child process: exit statuses are what cron jobs and monitoring see, and
// in-process runCli() tests cannot observe how Node itself ends.
const BIN = join(import.meta.dirname, '../../bin/condor-token-broker.js')

describe('condor-token-broker as a process', () => {
  let dir: string
  let env: NodeJS.ProcessEnv
  const run = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { env, encoding: 'utf8', timeout: 30_000 })

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ctb-proc-'))
    env = { ...process.env, CTB_DATA_DIR: join(dir, 'data'), CTB_TRUST_DOMAIN: 'pool.example.org' }
    expect(run('keys', 'init').status).toBe(0)
    const store = new SqliteStore({ file: join(dir, 'data', 'audit.db') })
    await Promise.all(Array.from({ length: 3000 }, (_, i) => store.record({ type: 'token.issued', time: 1_800_000_000 + i, role: 'startd', issuedSub: `startd-${i}@eps.pool.example.org`, decision: 'allow' })))
    await store.close()
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it.each([['audit', 'verify'], ['audit', 'list', '--limit', '3'], ['revoke', 'list'], ['keys', 'list']])('%s %s exits 0 with no warning', (...args) => {
    const r = run(...args)
    expect(r.stderr).not.toMatch(/Warning|unsettled/)
    expect(r.status).toBe(0)
  })

  it('audit export into a reader that stops early ends quietly', async () => {
    const child = spawn(process.execPath, [BIN, 'audit', 'export'], { env, stdio: ['ignore', 'pipe', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (c) => { stderr += c })
    child.stdout.once('data', () => child.stdout.destroy())
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)))
    expect(stderr).not.toMatch(/EPIPE|at .*:\d+:\d+/)
    expect(code).toBe(0)
  })

  it('a usage error exits 2 with one line on stderr', () => {
    const r = run('token', 'create', '--nope')
    expect(r.status).toBe(2)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
  })

  it('token create exits 1 and leaves no token file when its audit record cannot be committed', async () => {
    const own = mkdtempSync(join(tmpdir(), 'ctb-proc-audit-'))
    try {
      const e = { ...env, CTB_DATA_DIR: join(own, 'data') }
      const runIn = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { env: e, encoding: 'utf8', timeout: 30_000 })
      expect(runIn('keys', 'init').status).toBe(0)
      // The log as a broker's first start leaves it (audit verify only reads: it creates none).
      await new SqliteStore({ file: join(own, 'data', 'audit.db') }).close()
      expect(runIn('audit', 'verify').status).toBe(0)
      const db = new DatabaseSync(join(own, 'data', 'audit.db'))
      db.exec(`CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'store refuses writes'); END`)
      db.close()
      const out = join(own, 'token')
      const r = runIn('token', 'create', '--identity', 'alice@pool.example.org', '--authz', 'READ', '--file', out)
      expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(/no token issued: its audit record could not be committed/)])
      expect(r.stdout).toBe('')
      expect(r.status).toBe(1)
      expect(existsSync(out)).toBe(false)
      // The output's temp file, created before minting, is gone too.
      expect(readdirSync(own)).toEqual(['data'])
    } finally {
      rmSync(own, { recursive: true, force: true })
    }
  })
})
