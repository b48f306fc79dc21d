import { spawn, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { chmodSync, chownSync, cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { once } from 'node:events'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { tempDir } from '../support/tmp.ts'

// An auditor runs `audit verify` on a copy of the log (a backup, a read-only mount, a file they may not
// write), and an upgrade may install a newer broker before `serve` restarts. A command that only reads
// opened the log as a writer: it failed on a read-only file ("attempt to write a readonly database") and
// migrated an older schema in place, under whatever still runs the old version.
const BIN = join(import.meta.dirname, '../../bin/condor-token-broker.js')

/** The commands that only read the audit log, with the exit status each gives on an intact log. */
const READERS: ReadonlyArray<readonly string[]> = [
  ['audit', 'verify'], ['audit', 'list'], ['audit', 'export'], ['revoke', 'list'], ['revoke', 'condor'],
  ['revoke', '--sub', 'nobody@pool.example.org', '--dry-run'], ['pilot', 'list'], ['credential', 'list'],
]

const NOBODY = 65534

function run(dataDir: string, args: readonly string[], as?: number) {
  return spawnSync(process.execPath, [BIN, ...args], {
    env: { PATH: process.env.PATH, CTB_DATA_DIR: dataDir, CTB_TRUST_DOMAIN: 'pool.example.org' },
    encoding: 'utf8', timeout: 30_000, ...(as !== undefined ? { uid: as, gid: as } : {}),
  })
}

/** sha256 of every file of the data directory's audit log (the database and any -wal / -shm beside it). */
function logFiles(dataDir: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const f of readdirSync(dataDir).filter((n) => n.startsWith('audit.db')).sort()) {
    out[f] = createHash('sha256').update(readFileSync(join(dataDir, f))).digest('hex')
  }
  return out
}

let source: string
// Shared by every test (tempDir's are removed after each one); each test reads a copy.
const sourceRoot = mkdtempSync(join(tmpdir(), 'ctb-ro-src-'))
afterAll(() => rmSync(sourceRoot, { recursive: true, force: true }))
beforeAll(() => {
  source = join(sourceRoot, 'data')
  expect(run(source, ['keys', 'init']).status).toBe(0)
  for (const who of ['alice', 'bob']) {
    expect(run(source, ['token', 'create', '--identity', `${who}@pool.example.org`, '--authz', 'READ']).status).toBe(0)
  }
}, 60_000)

/** A copy of the source data directory, for one test to change. */
function copy(): string {
  const dir = join(tempDir('ctb-ro-'), 'data')
  cpSync(source, dir, { recursive: true })
  return dir
}

describe('commands that only read the audit log', () => {
  it('read a log they may not write, and leave it as it was', () => {
    const dir = copy()
    // Not writable by whoever runs the command: as root (who writes anyway) the command runs as nobody,
    // owning a copy whose files and directory have no write bit.
    const as = process.getuid?.() === 0 ? NOBODY : undefined
    if (as !== undefined) {
      chmodSync(join(dir, '..'), 0o755)
      for (const p of [dir, ...readdirSync(dir, { recursive: true }).map((f) => join(dir, String(f)))]) chownSync(p, as, as)
    }
    for (const f of readdirSync(dir).filter((n) => n.startsWith('audit.db'))) chmodSync(join(dir, f), 0o444)
    chmodSync(dir, 0o555)
    const before = logFiles(dir)
    for (const args of READERS) {
      const r = run(dir, args, as)
      expect({ args, status: r.status, stderr: r.stderr }).toEqual({ args, status: 0, stderr: expect.not.stringMatching(/readonly|cannot open/) })
    }
    const verify = run(dir, ['audit', 'verify'], as)
    // The first write's audit.macs_started statement (docs/audit.md) and the two tokens' records: nothing else.
    expect(verify.stdout).toMatch(/^audit chain OK: 3 records, seq 1\.\.3, /m)
    expect(logFiles(dir)).toEqual(before)
    chmodSync(dir, 0o755)
  })

  it('refuse a log of an older schema in one line and leave it unmigrated', () => {
    const dir = copy()
    const file = join(dir, 'audit.db')
    const db = new DatabaseSync(file)
    const current = (db.prepare('PRAGMA user_version').get() as { user_version: number }).user_version
    // As a broker one version older left it (the newest step's own changes are beside the point here).
    db.exec(`PRAGMA user_version = ${current - 1}`)
    db.close()
    for (const args of READERS) {
      const r = run(dir, args)
      expect({ args, status: r.status }).toEqual({ args, status: 1 })
      expect(r.stderr).toBe(`condor-token-broker: the audit database has schema version ${current - 1}, older than this broker's (${current}); a command that only reads does not migrate it: start this version's serve (which migrates) first, or read it with the version that wrote it\n`)
      expect(r.stdout).toBe('')
    }
    const after = new DatabaseSync(file, { readOnly: true })
    expect((after.prepare('PRAGMA user_version').get() as { user_version: number }).user_version).toBe(current - 1)
    after.close()
  })

  it('on a path with no log, the readers other than audit create none and fail in one line', () => {
    const dir = join(tempDir('ctb-ro-none-'), 'data')
    cpSync(join(source, 'keys'), join(dir, 'keys'), { recursive: true })
    for (const args of READERS.filter((a) => a[0] !== 'audit')) {
      const r = run(dir, args)
      expect({ args, status: r.status, stderr: r.stderr }).toEqual({
        args, status: 1,
        stderr: `condor-token-broker: no audit log at ${join(dir, 'audit.db')}: check audit.sqlite.file and data_dir (a relative data_dir is taken from the working directory); a command that only reads creates none\n`,
      })
    }
    expect(existsSync(join(dir, 'audit.db'))).toBe(false)
    expect(statSync(dir).isDirectory()).toBe(true)
  })
})

// A copy the reader may not write, with no -wal beside it, is read as it lies (SQLite's immutable mode): no
// lock, no check that the file stays as it was. Whoever may write the directory (the broker's own user,
// starting serve on it while an auditor's verify runs) can change it meanwhile, and a file read as it lies
// that changes gives wrong answers or SQLITE_CORRUPT. So the reader checks, as it closes, that the file is
// as it was when opened, and fails in one line if not: what it printed may not hold.
const STORE = join(import.meta.dirname, '../../src/storage/sqlite_store.ts')
const READ_AFTER_A_LINE = `
import { SqliteStore } from ${JSON.stringify(STORE)}
import { once } from 'node:events'
const store = new SqliteStore({ file: process.argv[1], writer: 'inline', readOnly: true })
process.stdout.write('open\\n')
await once(process.stdin, 'data')
try {
  const page = await store.query({ limit: 10 })
  await store.close()
  process.stdout.write(page.records.length + ' records\\n')
} catch (err) {
  process.stderr.write(err.message + '\\n')
  process.exitCode = 1
}
`

describe('a log read as it lies', () => {
  it('fails in one line when the file changed while it was read', async () => {
    const dir = copy()
    const as = process.getuid?.() === 0 ? NOBODY : undefined
    if (as !== undefined) {
      chmodSync(join(dir, '..'), 0o755)
      for (const p of [dir, ...readdirSync(dir, { recursive: true }).map((f) => join(dir, String(f)))]) chownSync(p, as, as)
    }
    const file = join(dir, 'audit.db')
    chmodSync(file, 0o644)
    chmodSync(dir, 0o555)
    const child = spawn(process.execPath, ['--input-type=module', '-e', READ_AFTER_A_LINE, file], {
      stdio: ['pipe', 'pipe', 'pipe'], ...(as !== undefined ? { uid: as, gid: as } : {}),
    })
    const exited = once(child, 'exit') as Promise<[number]>
    let out = ''
    let err = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d })
    child.stderr.setEncoding('utf8').on('data', (d: string) => { err += d })
    try {
      for (let i = 0; i < 200 && !out.includes('open'); i++) await new Promise((r) => setTimeout(r, 50))
      expect({ out, err }).toEqual({ out: 'open\n', err: '' })
      // The owner writes meanwhile: a new table, committed and checkpointed into the file (as a broker's
      // last close does), which leaves no -wal behind.
      chmodSync(dir, 0o755)
      const w = new DatabaseSync(file)
      w.exec('CREATE TABLE written_meanwhile (x INTEGER); INSERT INTO written_meanwhile VALUES (1)')
      w.exec('PRAGMA wal_checkpoint(TRUNCATE)')
      w.close()
      chmodSync(dir, 0o555)
      child.stdin.end('go\n')
      const [code] = await exited
      expect({ code, err }).toEqual({ code: 1, err: `the audit log ${file} changed while it was read as it lies (no -wal beside it, in a directory this user may not write): a writer was at work on it, so what was read may not hold; read it again, or a copy\n` })
    } finally {
      child.kill()
      chmodSync(dir, 0o755)
    }
  }, 30_000)
})
