import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { expect, it } from 'vitest'
import { cli } from '../support/cli.ts'
import { BIN, startServeProcess, stopServeProcess } from '../support/serve_process.ts'
import { tempDir } from '../support/tmp.ts'

/** A fresh data directory and the environment of a CLI or serve on it, ports chosen by the system. */
function brokerDirs(): { dataDir: string; env: NodeJS.ProcessEnv } {
  const dataDir = join(tempDir(), 'data')
  // `revoke` checks site and role names against the policies, which name the IAM issuer.
  const config = join(tempDir(), 'broker.yaml')
  writeFileSync(config, 'policy:\n  vars:\n    IAM_ISSUER: https://iam.example.org/\n')
  return { dataDir, env: { ...process.env, CTB_CONFIG: config, CTB_DATA_DIR: dataDir, CTB_TRUST_DOMAIN: 'pool.example.org', CTB_LISTEN_PORT: '0', CTB_DEV_IAM_PORT: '0' } }
}

/** Runs `serve` and resolves with how it ended; a serve that starts instead is stopped and reported as such. */
async function serveOutcome(env: NodeJS.ProcessEnv): Promise<{ code: number | null; stderr: string; started: boolean }> {
  const child = spawn(process.execPath, [BIN, 'serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (c) => { stderr += c })
  return new Promise((resolve) => {
    const t = setTimeout(() => { child.kill('SIGKILL') }, 25_000)
    child.stdout.on('data', (c: Buffer) => {
      if (c.toString().includes('serving at')) { clearTimeout(t); void stopServeProcess(child).then(() => resolve({ code: null, stderr, started: true })) }
    })
    child.once('exit', (code) => { clearTimeout(t); resolve({ code, stderr, started: false }) })
  })
}

it('a revocation row deleted behind the broker fails audit verify and stops serve from starting', async () => {
  const { dataDir, env } = brokerDirs()
  expect((await cli(['revoke', '--site', 'cloud-a', '--reason', 'compromised'], env)).code).toBe(0)
  expect((await cli(['revoke', '--role', 'pilot'], env)).code).toBe(0)
  // Seq 1 opens the MAC era: the first record written with the audit MAC key (docs/audit.md).
  // Before serve's first start there is no IDTOKEN key yet, so no anchor to read.
  expect((await cli(['audit', 'verify'], env)).out).toMatch(/^audit chain OK: 3 records.*\naudit MACs OK: every record from seq 1 to 3 [^\n]*\nrevocations OK: 2 rows match the audit chain\naudit anchors UNCHECKED: [^\n]*$/)
  await stopServeProcess(await startServeProcess(env))

  // An insider un-revokes the site with one DELETE; the hash chain itself is untouched.
  const db = new DatabaseSync(join(dataDir, 'audit.db'))
  db.prepare("DELETE FROM revocations WHERE kind = 'site'").run()
  db.close()

  const v = await cli(['audit', 'verify'], env)
  expect(v.code).toBe(1)
  expect(v.out).toMatch(/^audit chain OK: 3 records.*\naudit MACs OK: [^\n]*\nrevocations DIFFER: revocation 1 \(site "cloud-a"\), recorded at seq 2, is missing from the revocations table \(deleted\)\naudit anchor in the database: checked [^\n]*\naudit anchor in [^\n]*: checked [^\n]*$/)

  const serve = await serveOutcome(env)
  expect(serve.started).toBe(false)
  expect(serve.code).toBe(1)
  // Besides the structured log lines (JSON) of what started before the store was opened: one line, naming the row.
  expect(serve.stderr.split('\n').filter((l) => l !== '' && !l.startsWith('{'))).toEqual(['condor-token-broker: revocations differ from the audit chain: revocation 1 (site "cloud-a"), recorded at seq 2, '
    + 'is missing from the revocations table (deleted); run "audit verify" and restore the revocations table from a backup'])
}, 90_000)

it('a deleted revocation row whose record was retyped stops serve, and audit verify calls the revocations UNVERIFIED', async () => {
  const { dataDir, env } = brokerDirs()
  expect((await cli(['revoke', '--site', 'cloud-a', '--reason', 'compromised'], env)).code).toBe(0)
  expect((await cli(['revoke', '--jti', 'j-1', '--exp', String(Math.floor(Date.now() / 1000) + 600)], env)).code).toBe(0)
  // A first start checks the whole chain and seals an anchor; the second start resumes from it.
  await stopServeProcess(await startServeProcess(env))

  // Two statements: the row goes, and its record's (unhashed) type column no longer says token.revoked.
  const db = new DatabaseSync(join(dataDir, 'audit.db'))
  db.exec("DELETE FROM revocations WHERE id = 1; UPDATE audit_log SET type = 'token.denied' WHERE seq = 2")
  db.close()

  const v = await cli(['audit', 'verify'], env)
  expect(v.code).toBe(1)
  expect(v.out.split('\n')).toEqual([
    'audit chain BROKEN at record seq 2: column type differs from the hashed body (record edited) (2 records checked)',
    'revocations DIFFER: revocation 1 (site "cloud-a"), recorded at seq 2, is missing from the revocations table (deleted)',
    'revocations UNVERIFIED: the audit chain is broken, so it cannot vouch for the 1 rows of the revocations table',
    // The anchors say nothing of records below them: the anchored record itself is intact.
    'audit anchor in the database: checked (the log still holds seq 3 as a check verified it)',
    `audit anchor in ${join(dataDir, 'audit_anchor')}: checked (the log still holds seq 3 as a check verified it)`,
  ])

  const serve = await serveOutcome(env)
  expect(serve.started).toBe(false)
  expect(serve.code).toBe(1)
  expect(serve.stderr.split('\n').filter((l) => l !== '' && !l.startsWith('{'))).toEqual(['condor-token-broker: the audit chain cannot vouch for the revocations table: '
    + 'audit chain broken at seq 2, a record that stated revocations when last verified: column type differs from the hashed body (record edited); run "audit verify"'])
}, 90_000)

it('revoke lift lifts an entry with its record: audit verify and serve stay green, condor drops it, a second lift fails', async () => {
  const { env } = brokerDirs()
  expect((await cli(['revoke', '--site', 'cloud-a'], env)).code).toBe(0)
  expect((await cli(['revoke', '--sub', 'pilot-x@pilots.pool.example.org'], env)).code).toBe(0)
  const lift = await cli(['revoke', 'lift', '1', '--reason', 'false alarm'], env)
  expect(lift.code).toBe(0)
  expect(lift.out.split('\n')[0]).toBe('lifted revocation 1 (site cloud-a)')
  const condor = await cli(['revoke', 'condor'], env)
  expect(condor.out).toMatch(/^SEC_TOKEN_REVOCATION_EXPR = \(sub =\?= "pilot-x@pilots\.pool\.example\.org" && iat <= \d+\)$/m)
  expect((await cli(['revoke', 'list'], env)).out).not.toContain('cloud-a')
  expect((await cli(['revoke', 'list', '--all'], env)).out).toMatch(/cloud-a .* lifted \S+ by cli:/)
  expect((await cli(['audit', 'verify'], env)).out).toMatch(/^audit chain OK: 4 records.*\naudit MACs OK: [^\n]*\nrevocations OK: 2 rows match the audit chain\naudit anchors? [^\n]*(\naudit anchor [^\n]*)?$/)
  await stopServeProcess(await startServeProcess(env))

  const again = await cli(['revoke', 'lift', '1'], env)
  expect(again.code).toBe(1)
  expect(again.err.trim()).toBe('condor-token-broker: revocation 1 was already lifted')
  const unknown = await cli(['revoke', 'lift', '9'], env)
  expect([unknown.code, unknown.err.trim()]).toEqual([1, 'condor-token-broker: no revocation has id 9'])
}, 90_000)

it('the newest revocation cut off the end with its row stops serve, though the shorter chain verifies', async () => {
  const { dataDir, env } = brokerDirs()
  expect((await cli(['revoke', '--site', 'cloud-a'], env)).code).toBe(0)
  // A first start seals an anchor at the head; the revocation after it is the one to be undone.
  await stopServeProcess(await startServeProcess(env))
  expect((await cli(['revoke', '--jti', 'j-stolen', '--exp', String(Math.floor(Date.now() / 1000) + 600), '--reason', 'stolen'], env)).code).toBe(0)
  await stopServeProcess(await startServeProcess(env))

  // The record, its row and the head, as one transaction: what is left is a whole chain ending at seq 2.
  // (Seq 1 opened the MAC era.) Cutting off the end is not what record MACs catch: every MAC left is valid.
  const db = new DatabaseSync(join(dataDir, 'audit.db'))
  db.exec(`BEGIN; DELETE FROM audit_log WHERE seq = 3; DELETE FROM revocations WHERE id = 2;
    UPDATE audit_head SET seq = 2, hash = (SELECT hash FROM audit_log WHERE seq = 2) WHERE id = 1; COMMIT`)
  db.close()

  // The chain left is whole; only the anchors show the cut, and audit verify compares them on this host,
  // which holds the IDTOKEN key (docs/audit.md, "Anchors in audit verify").
  const cut = 'the audit log ends at seq 2, but an earlier check verified it up to seq 3 (records cut off the end, or an older copy of the database restored: if on purpose, delete both anchors as docs/audit.md says)'
  const v = await cli(['audit', 'verify'], env)
  expect(v.code).toBe(1)
  expect(v.out).toMatch(/^audit chain OK: 2 records.*\naudit MACs OK: [^\n]*\nrevocations OK: 1 rows match the audit chain\n/)
  expect(v.out.split('\n').slice(3)).toEqual([`audit anchor in the database: DEPARTS: ${cut}`, `audit anchor in ${join(dataDir, 'audit_anchor')}: DEPARTS: ${cut}`])
  const serve = await serveOutcome(env)
  expect(serve.started).toBe(false)
  expect(serve.code).toBe(1)
  expect(serve.stderr.split('\n').filter((l) => l !== '' && !l.startsWith('{'))).toEqual(['condor-token-broker: the audit chain cannot vouch for the revocations table: '
    + 'the audit log ends at seq 2, but an earlier check verified it up to seq 3 (records cut off the end, or an older copy of the database restored: if on purpose, delete both anchors as docs/audit.md says); run "audit verify"'])

  // The anchor's copy outside the database still remembers seq 2 when the database's own is deleted.
  const db2 = new DatabaseSync(join(dataDir, 'audit.db'))
  db2.exec('DELETE FROM audit_anchor')
  db2.close()
  const again = await serveOutcome(env)
  expect([again.started, again.code]).toEqual([false, 1])
  expect(again.stderr).toContain('the audit log ends at seq 2, but an earlier check verified it up to seq 3')

  // Restored on purpose: deleting the copy too says so, and the next start checks everything again.
  expect(statSync(join(dataDir, 'audit_anchor')).mode & 0o777).toBe(0o600)
  rmSync(join(dataDir, 'audit_anchor'))
  await stopServeProcess(await startServeProcess(env))
}, 120_000)

it('a lift appended straight into the database, its row marked lifted, stops serve and fails audit verify, naming its seq', async () => {
  const { dataDir, env } = brokerDirs()
  expect((await cli(['revoke', '--site', 'cloud-a', '--reason', 'compromised'], env)).code).toBe(0)
  // Seq 1 opens the MAC era, seq 2 is the revocation; a start verifies both and seals an anchor.
  await stopServeProcess(await startServeProcess(env))

  // The insider of docs/audit.md: the documented hash, columns agreeing with the body, the row and the head.
  const now = Math.floor(Date.now() / 1000)
  const body = `{"caller":{"sub":"cli:admin"},"decision":"allow","detail":{"lift":{"id":1,"liftedAt":${now},"liftedBy":"cli:admin"}},"reason":"false alarm","site":"cloud-a","time":${now},"type":"token.unrevoked"}`
  const db = new DatabaseSync(join(dataDir, 'audit.db'))
  const head = db.prepare('SELECT seq, hash FROM audit_head WHERE id = 1').get() as { seq: number; hash: string }
  expect(head.seq).toBe(2)
  const hash = createHash('sha256').update(`3\n${head.hash}\n${body}`).digest('hex')
  db.prepare("INSERT INTO audit_log (seq, time, type, caller_sub, decision, site, body, prev_hash, hash) VALUES (3, ?, 'token.unrevoked', 'cli:admin', 'allow', 'cloud-a', ?, ?, ?)").run(now, body, head.hash, hash)
  db.prepare("UPDATE revocations SET lifted_at = ?, lifted_by = 'cli:admin' WHERE id = 1").run(now)
  db.prepare('UPDATE audit_head SET seq = 3, hash = ? WHERE id = 1').run(hash)
  db.close()

  const reason = 'record has no MAC, but the broker has put one on every record since seq 1 (written outside the broker)'
  const v = await cli(['audit', 'verify'], env)
  expect(v.code).toBe(1)
  expect(v.out.split('\n')[0]).toBe(`audit chain BROKEN at record seq 3: ${reason} (3 records checked)`)
  const serve = await serveOutcome(env)
  expect([serve.started, serve.code]).toEqual([false, 1])
  expect(serve.stderr.split('\n').filter((l) => l !== '' && !l.startsWith('{'))).toEqual([`condor-token-broker: the audit chain cannot vouch for the revocations table: audit chain broken at seq 3: ${reason}; run "audit verify"`])
}, 90_000)
