import { existsSync, readFileSync, statSync } from 'node:fs'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { describe, expect, it } from 'vitest'
import { runCli } from '../../src/cli/main.ts'
import { ensureAuditMacKeyFile } from '../../src/keys/audit_mac_key.ts'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
import { tempDir } from '../support/tmp.ts'
import { issued } from './audit_log.contract.ts'
import { documentedHash } from '../support/forged_record.ts'

async function cli(env: NodeJS.ProcessEnv, ...argv: string[]) {
  const out: string[] = []
  const err: string[] = []
  const code = await runCli(argv, { out: (s) => out.push(s), err: (s) => err.push(s), env })
  return { code, out: out.join('\n'), err: err.join('\n') }
}

/** audit verify's last line on a data dir with no IDTOKEN key: the sealed anchors cannot be read. */
const ANCHORS_UNCHECKED = expect.stringMatching(/^audit anchors UNCHECKED: cannot read the IDTOKEN key that seals them \(.+\); records cut off the end or an older copy restored would pass$/)

async function seeded(n: number, time?: number) {
  const dataDir = join(tempDir(), 'data')
  const env = { CTB_DATA_DIR: dataDir, CTB_TRUST_DOMAIN: 'pool.example.org' }
  // The audit MAC key a development broker made on its first write; the records below were written without
  // it, as by a version before MACs. A command that only reads never creates the key (docs/audit.md).
  ensureAuditMacKeyFile(join(dataDir, 'keys', 'audit_mac.key'))
  const store = new SqliteStore({ file: join(dataDir, 'audit.db') })
  await Promise.all(Array.from({ length: n }, (_, i) => store.record(issued(i + 1, time !== undefined ? { time: time + i } : {}))))
  await store.close()
  return { env, file: join(dataDir, 'audit.db') }
}

describe('condor-token-broker audit', () => {
  it('verify passes on an intact chain', async () => {
    const { env } = await seeded(50)
    const r = await cli(env, 'audit', 'verify')
    expect(r.code).toBe(0)
    // Written without the audit MAC key, as by a version before MACs: nothing to check yet, and no fault.
    expect(r.out).toMatch(/^audit chain OK: 50 records, seq 1\.\.50, head [0-9a-f]{64}\naudit MACs: none yet \(every record was written before MACs began; the next one the broker writes starts them\)\nrevocations OK: 0 rows match the audit chain\naudit anchors UNCHECKED: cannot read the IDTOKEN key /)
  })

  it('verify names the one record edited in the database', async () => {
    const { env, file } = await seeded(50)
    const db = new DatabaseSync(file)
    const { seq } = db.prepare("SELECT seq FROM audit_log WHERE jti = 'jti-23'").get() as { seq: number }
    // An insider rewrites who received the token, leaving every other column alone.
    db.prepare("UPDATE audit_log SET body = replace(body, 'pilot-3@pilots', 'pilot-9@pilots') WHERE seq = ?").run(seq)
    db.close()
    const r = await cli(env, 'audit', 'verify')
    expect(r.code).toBe(1)
    expect(r.out.split('\n')).toEqual([
      `audit chain BROKEN at record seq ${seq}: hash does not match the record content (record edited) (${seq} records checked)`,
      'revocations UNVERIFIED: the audit chain is broken, so it cannot vouch for the 0 rows of the revocations table',
      ANCHORS_UNCHECKED,
    ])
  })

  // A body edited into text that is not JSON (a write to the file) made list and export fail on a SyntaxError.
  it('list and export show a body that is not JSON as an unreadable record at its seq, and verify names it', async () => {
    const { env, file } = await seeded(5)
    const db = new DatabaseSync(file)
    db.prepare("UPDATE audit_log SET body = 'not json' WHERE seq = 3").run()
    db.close()
    const list = await cli(env, 'audit', 'list')
    expect([list.code, list.err]).toEqual([0, ''])
    const lines = list.out.split('\n')
    expect(lines.map((l) => l.trim().split(/\s+/)[0])).toEqual(['5', '4', '3', '2', '1'])
    expect(lines[2]).toMatch(/^ {6}3 {2}2027-01-15T08:00:03Z {2}token\.issued {5}UNREADABLE: body is not valid JSON \(edited by hand, or corrupted; run "audit verify"\)$/)
    const unreadable = { seq: 3, hash: expect.stringMatching(/^[0-9a-f]{64}$/), prev_hash: expect.stringMatching(/^[0-9a-f]{64}$/), unreadable: { reason: 'body is not valid JSON', body: 'not json' } }
    const json = await cli(env, 'audit', 'list', '--json')
    expect(JSON.parse(json.out.split('\n')[2]!)).toEqual(unreadable)
    const ex = await cli(env, 'audit', 'export')
    expect(ex.code).toBe(0)
    const exported = ex.out.split('\n').map((l) => JSON.parse(l) as { seq: number })
    expect(exported.map((l) => l.seq)).toEqual([1, 2, 3, 4, 5])
    expect(exported[2]).toEqual(unreadable)
    const v = await cli(env, 'audit', 'verify')
    expect(v.code).toBe(1)
    expect(v.out.split('\n')).toEqual([
      'audit chain BROKEN at record seq 3: body is not valid JSON (3 records checked)',
      'revocations UNVERIFIED: the audit chain is broken, so it cannot vouch for the 0 rows of the revocations table',
      ANCHORS_UNCHECKED,
    ])
  })

  // A body edited into JSON whose fields are of the wrong type is still read as an event (it has a type and a
  // time); list printed the decision with String.prototype.padEnd and failed on a number: "internal error".
  it('list prints a record whose body holds a decision that is not a string, as stored', async () => {
    const { env, file } = await seeded(5)
    const db = new DatabaseSync(file)
    db.prepare('UPDATE audit_log SET body = ? WHERE seq = 3').run('{"decision":1,"time":1800000003,"type":"token.issued"}')
    db.close()
    const list = await cli(env, 'audit', 'list')
    expect([list.code, list.err]).toEqual([0, ''])
    expect(list.out.split('\n')[2]).toBe('      3  2027-01-15T08:00:03Z  token.issued     1      role=-  sub=-  jti=-  caller=-')
  })

  // The plain-text list is what an operator reads on a terminal: a value that breaks the line or carries an escape
  // sequence (a body edited in the database, a caller's sub with spaces) must not forge a line or a column.
  it('list prints each record on one line, its free-text values quoted when not plainly printable', async () => {
    const dataDir = join(tempDir(), 'data')
    const env = { CTB_DATA_DIR: dataDir, CTB_TRUST_DOMAIN: 'pool.example.org' }
    const store = new SqliteStore({ file: join(dataDir, 'audit.db') })
    await store.record(issued(1, {
      caller: { iss: 'https://iam.example.org/', sub: 'alice  site=hpc-a' },
      issuedSub: 'x\n      9  2027-01-15T08:00:09Z  token.revoked',
      jti: 'j\u001b[2Kti',
      reason: 'révoqué \u202e\u0085',
    }))
    await store.close()
    const list = await cli(env, 'audit', 'list')
    expect([list.code, list.err]).toEqual([0, ''])
    expect(list.out.split('\n')).toEqual([
      '      1  2027-01-15T08:00:01Z  token.issued     allow  role=schedd  sub="x\\n      9  2027-01-15T08:00:09Z  token.revoked"  jti="j\\u001b[2Kti"  caller="alice  site=hpc-a"  site=SITE_B  reason="révoqué \\u202e\\u0085"',
    ])
  })

  it('list filters newest first; export writes JSON Lines in chain order', async () => {
    const { env } = await seeded(20)
    const list = await cli(env, 'audit', 'list', '--role', 'pilot', '--limit', '3')
    expect(list.code).toBe(0)
    expect(list.out.split('\n').map((l) => /jti=(\S+)/.exec(l)![1])).toEqual(['jti-20', 'jti-18', 'jti-16'])
    const out = join(tempDir(), 'export.jsonl')
    const ex = await cli(env, 'audit', 'export', '--decision', 'allow', '--out', out)
    expect(ex.code).toBe(0)
    const lines = readFileSync(out, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as { seq: number; event: { jti: string } })
    expect(lines.map((l) => l.seq)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1))
    expect(statSync(out).mode & 0o777).toBe(0o600)
    expect((await cli(env, 'audit', 'list', '--from', 'yesterday')).code).toBe(2)
  })

  it('prune keeps the chain verifiable', async () => {
    // Events from 2020: with a 1-day retention every one of them is due.
    const { env } = await seeded(10, 1_600_000_000)
    const r = await cli(env, 'audit', 'prune', '--days', '1')
    // Seq 11 opens the MAC era (the CLI's first record written with the key); the checkpoint follows it.
    expect(r.out).toBe('pruned 10 records older than 1 days; checkpoint is record 12')
    expect((await cli(env, 'audit', 'verify')).out).toMatch(/^audit chain OK: 2 records, seq 11\.\.12, head [0-9a-f]{64}\naudit MACs OK: every record from seq 11 to 12 carries the broker's MAC \(key [0-9a-f]{16}\)\n/)
  })

  it('prune of more than one chunk says how many chunks, each with its checkpoint, and the chain verifies', async () => {
    const { env } = await seeded(12_000, 1_600_000_000)
    const r = await cli(env, 'audit', 'prune', '--days', '1')
    // Chunks of at most 5,000 (docs/audit.md, "Retention"): 1-5000, 5001-10000, 10001-12000. Seq 12001 opens
    // the MAC era; the three checkpoints follow it.
    expect(r.out).toBe('pruned 12000 records older than 1 days in 3 chunks; the last checkpoint is record 12004')
    expect((await cli(env, 'audit', 'verify')).out).toMatch(/^audit chain OK: 4 records, seq 12001\.\.12004, head [0-9a-f]{64}\n/)
  })

  it('prune keeps what a pool CA\'s CRL may still list, whatever --days says, even on a host without the CA key', async () => {
    // Three days old: a token that lived an hour and a host certificate signed for seven days.
    const now = Math.floor(Date.now() / 1000)
    const { env, file } = await seeded(0)
    const store = new SqliteStore({ file })
    for (let i = 1; i <= 3; i++) await store.record(issued(i, { time: now - 3 * 86400, exp: now - 3 * 86400 + 3600 }))
    await store.record({ type: 'certificate.issued', time: now - 3 * 86400, caller: { sub: 'provisioner' }, exp: now + 4 * 86400, decision: 'allow', detail: { serial: '0c' } })
    await store.close()
    const r = await cli(env, 'audit', 'prune', '--days', '1')
    expect(r.code).toBe(0)
    // ca.max_lifetime (7 days by default) and ca.crl_lifetime (1 day) beyond: nothing is that old. The CLI
    // reads its own clock a moment after `now`, which may already be the next minute.
    const minute = (t: number) => new Date((t - 8 * 86400) * 1000).toISOString().slice(0, 16)
    const held = `(?:${minute(now)}|${minute(now + 60)})`
    expect(r.out).toMatch(new RegExp(`^nothing to prune \\(held back from 1 days to ${held}:\\d\\d\\.000Z: the pool CA's CRL may still list certificates recorded since\\)$`))
    expect((await cli(env, 'audit', 'verify')).out).toMatch(/^audit chain OK: 4 records, seq 1\.\.4/)
  })
})

describe('condor-token-broker revoke', () => {
  it('revokes by role, lists it, and writes the HTCondor snippet atomically', async () => {
    const { env } = await seeded(3)
    const r = await cli(env, 'revoke', '--role', 'pilot', '--reason', 'factory compromised')
    expect(r.code).toBe(0)
    expect(r.out).toContain('pilot tokens now carry ctb_gen 2')
    expect((await cli(env, 'revoke', 'list')).out).toMatch(/^ +1 {2}role {2}pilot .* gen 2 {2}reason "factory compromised" {2}by cli:/)
    const file = join(tempDir(), '90-token-revocations.conf')
    const w = await cli(env, 'revoke', 'condor', '--out', file)
    expect(w.code).toBe(0)
    expect(readFileSync(file, 'utf8')).toContain('SEC_TOKEN_REVOCATION_EXPR = (ctb_role =?= "pilot" && ctb_gen < 2)\n')
    expect(statSync(file).mode & 0o777).toBe(0o644)
    expect((await cli(env, 'audit', 'list', '--type', 'token.revoked')).out).toContain('role=pilot')
    expect((await cli(env, 'audit', 'verify')).code).toBe(0)
  })

  // A sub is any printable ASCII, spaces included: unquoted, this one read as a revocation until 2099.
  it('revoke list quotes a value with spaces, so it cannot pass for another column', async () => {
    const { env } = await seeded(1)
    expect((await cli(env, 'revoke', '--sub', 'alice  until 2099-01-01T00:00:00Z')).code).toBe(0)
    expect((await cli(env, 'revoke', 'list')).out).toMatch(/^ {4}1 {2}sub {3}"alice  until 2099-01-01T00:00:00Z" {2}revoked \S+ {2}until 20\d\d-/)
  })

  // The revocations table is as open to a hand edit as the audit log: a kind holding a newline forged a second
  // revocation line (the value, issuer and principals were quoted, the kind was not).
  it('revoke list prints a revocation whose kind was edited in the database on one line', async () => {
    const { env, file } = await seeded(1)
    expect((await cli(env, 'revoke', '--sub', 'alice')).code).toBe(0)
    const db = new DatabaseSync(file)
    db.prepare('UPDATE revocations SET kind = ? WHERE id = 1').run('sub\n    2  role  pilot')
    db.close()
    const r = await cli(env, 'revoke', 'list')
    expect(r.out.split('\n')).toHaveLength(1)
    expect(r.out).toMatch(/^ {4}1 {2}"sub\\n {4}2 {2}role {2}pilot" {2}alice {2}revoked /)
  })

  it('writes the HTCondor snippet 0644 under a strict umask, so daemons that are not root can read it', async () => {
    const { env } = await seeded(1)
    const file = join(tempDir(), '90-token-revocations.conf')
    const before = process.umask(0o077)
    try {
      expect((await cli(env, 'revoke', 'condor', '--out', file)).code).toBe(0)
    } finally {
      process.umask(before)
    }
    expect(statSync(file).mode & 0o777).toBe(0o644)
  })

  it('reports an --out it cannot write as the operator\'s mistake: one line naming the file, exit 1', async () => {
    const { env } = await seeded(1)
    const dir = tempDir()
    const file = join(dir, 'plain-file')
    writeFileSync(file, 'x')
    for (const [out, why] of [[dir, 'is a directory'], [join(file, 'x.conf'), 'is not a directory']] as const) {
      const r = await cli(env, 'revoke', 'condor', '--out', out)
      expect(r.code).toBe(1)
      expect(r.err).toMatch(new RegExp(`^condor-token-broker: cannot write --out ${out.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: [^\n]*${why}[^\n]*$`))
    }
  })

  // Which tokens a revocation took is the first thing an admin reads the audit list for: a pilot-job,
  // site or client revocation has no role, sub or jti of its own, so the line must name it.
  it('audit list names what each revocation revoked, and the site', async () => {
    const { env } = await seeded(1)
    expect((await cli(env, 'revoke', '--pilot-job', 'hpc-b:4711')).code).toBe(0)
    expect((await cli(env, 'revoke', '--client', 'factory-x')).code).toBe(0)
    const lines = (await cli(env, 'audit', 'list', '--type', 'token.revoked')).out.split('\n')
    expect(lines[0]).toMatch(/ revoked=client:factory-x(  |$)/)
    expect(lines[1]).toMatch(/ site=hpc-b  revoked=pilot-job:hpc-b:4711(  |$)/)
  })

  // A lift record (token.unrevoked) named nothing of what it lifted: a client or pilot-job entry has no role,
  // sub or jti, so an auditor reading the list could not tell which revocation stopped. Named as revoke rows are.
  it('audit list names what each lift lifted, as the revocation it lifts is named', async () => {
    const { env } = await seeded(1)
    expect((await cli(env, 'revoke', '--client', 'factory-x')).code).toBe(0)
    expect((await cli(env, 'revoke', '--pilot-job', 'hpc-b:4711')).code).toBe(0)
    expect((await cli(env, 'revoke', 'lift', '1', '--reason', 'false alarm')).code).toBe(0)
    expect((await cli(env, 'revoke', 'lift', '2')).code).toBe(0)
    const lines = (await cli(env, 'audit', 'list', '--type', 'token.unrevoked')).out.split('\n')
    expect(lines).toHaveLength(2)
    expect(lines[0]).toMatch(/ token\.unrevoked .* site=hpc-b  revoked=pilot-job:hpc-b:4711$/)
    expect(lines[1]).toMatch(/ token\.unrevoked .* revoked=client:factory-x  reason="false alarm"$/)
  })

  it('audit list names a lift written before lift records said what they lifted by the entry\'s id', async () => {
    const { env, file } = await seeded(1)
    const store = new SqliteStore({ file })
    const rev = await store.revoke({ kind: 'client', value: 'factory-x', revokedAt: 1_800_000_000, until: 1_800_086_400, revokedBy: 'cli:op' },
      { type: 'token.revoked', time: 1_800_000_000, caller: { sub: 'cli:op' } })
    // The shape the service wrote until now: detail.lift with the id, time and actor only.
    await store.lift({ id: rev.id, liftedAt: 1_800_000_100, liftedBy: 'cli:op' },
      { type: 'token.unrevoked', time: 1_800_000_100, caller: { sub: 'cli:op' }, detail: { lift: { id: rev.id, liftedAt: 1_800_000_100, liftedBy: 'cli:op' } } })
    await store.close()
    const line = (await cli(env, 'audit', 'list', '--type', 'token.unrevoked')).out
    expect(line).toMatch(new RegExp(` token\\.unrevoked .* revoked=#${rev.id}$`))
  })

  // HTCondor reads only the directories LOCAL_CONFIG_DIR names: a mistyped --out directory that the CLI
  // created would hold a revocation no daemon ever reads, while the CLI said "wrote".
  it('refuses an --out whose directory does not exist, and creates none', async () => {
    const { env } = await seeded(1)
    const dir = join(tempDir(), 'conf.d')
    const r = await cli(env, 'revoke', 'condor', '--out', join(dir, '90-token-revocations.conf'))
    expect(r.code).toBe(1)
    expect(r.err).toMatch(/^condor-token-broker: cannot write --out [^\n]*: no such directory[^\n]*$/)
    expect(existsSync(dir)).toBe(false)
  })

  // SEC_TOKEN_REVOCATION_EXPR decides what every daemon accepts: written from a table an insider edited, it
  // un-revokes on every daemon at the next condor_reconfig. So revoke condor checks the table against the
  // chain first, as serve's start-up does, and refuses in that one line, leaving the file it would replace as it was.
  it.each([
    ['deleted', 'DELETE FROM revocations WHERE id = 1', 'revocation 1 (sub "mallory"), recorded at seq 5, is missing from the revocations table (deleted)'],
    ['marked lifted without a record', "UPDATE revocations SET lifted_at = 1800000500, lifted_by = 'cli:root' WHERE id = 1", 'revocation 1 (sub "mallory") differs from its record at seq 5: liftedAt 1800000500, recorded null, liftedBy "cli:root", recorded null (edited)'],
  ])('refuses to write the snippet from a revocations table whose row was %s by hand', async (_what, sql, difference) => {
    const { env, file } = await seeded(3)
    expect((await cli(env, 'revoke', '--sub', 'mallory')).code).toBe(0)
    const out = join(tempDir(), '90-token-revocations.conf')
    expect((await cli(env, 'revoke', 'condor', '--out', out)).code).toBe(0)
    const pushed = readFileSync(out, 'utf8')
    expect(pushed).toContain('sub =?= "mallory"')
    const db = new DatabaseSync(file)
    db.exec(sql)
    db.close()
    for (const argv of [['revoke', 'condor', '--out', out], ['revoke', 'condor']]) {
      const r = await cli(env, ...argv)
      expect({ code: r.code, out: r.out, err: r.err }).toEqual({
        code: 1, out: '',
        err: `condor-token-broker: revocations differ from the audit chain: ${difference}; run "audit verify" and restore the revocations table from a backup`,
      })
    }
    expect(readFileSync(out, 'utf8')).toBe(pushed)
  })

  it('refuses to write the snippet when the audit chain cannot vouch for the table', async () => {
    const { env, file } = await seeded(3)
    expect((await cli(env, 'revoke', '--sub', 'mallory')).code).toBe(0)
    const db = new DatabaseSync(file)
    // Seq 4 is the audit.macs_started record the CLI's first write appends; seq 5 the revocation.
    db.exec("UPDATE audit_log SET type = 'token.denied' WHERE seq = 5")
    db.exec('DELETE FROM revocations')
    db.close()
    const r = await cli(env, 'revoke', 'condor')
    expect({ code: r.code, out: r.out }).toEqual({ code: 1, out: '' })
    expect(r.err).toBe('condor-token-broker: the audit chain cannot vouch for the revocations table: audit chain broken at seq 5: column type differs from the hashed body (record edited); run "audit verify"')
  })

  it('refuses a role or site no policy defines and no token carries, in one line with exit 1, storing nothing', async () => {
    const { env } = await seeded(3)
    for (const [flag, value] of [['--role', 'stardt'], ['--site', 'hpc-x']] as const) {
      for (const extra of [[], ['--dry-run']]) {
        const r = await cli(env, 'revoke', flag, value, ...extra)
        expect(r.code).toBe(1)
        expect(r.err).toMatch(new RegExp(`^condor-token-broker: unknown ${flag.slice(2)} "${value}": no policy defines it and no token was issued for it \\(known ${flag.slice(2)}s: [^\\n]+\\)$`))
      }
    }
    expect((await cli(env, 'revoke', 'list', '--all')).out).toBe('no revocations')
    // Known from the shipped policies (policies/): startd and site hpc-b.
    expect((await cli(env, 'revoke', '--role', 'startd')).code).toBe(0)
    expect((await cli(env, 'revoke', '--site', 'hpc-b')).code).toBe(0)
  })

  it('--dry-run counts the live tokens that would be revoked and writes nothing', async () => {
    const dataDir = join(tempDir(), 'data')
    const env = { CTB_DATA_DIR: dataDir, CTB_TRUST_DOMAIN: 'pool.example.org' }
    const now = Math.floor(Date.now() / 1000)
    const store = new SqliteStore({ file: join(dataDir, 'audit.db') })
    // Tokens 1..6: even ones are pilot. Token 8 (pilot) has expired; token 2 is revoked already.
    for (let i = 1; i <= 6; i++) await store.record(issued(i, { time: now - 100, exp: now + 3600 }))
    await store.record(issued(8, { time: now - 7200, exp: now - 60 }))
    await store.close()
    expect((await cli(env, 'revoke', '--jti', 'jti-2')).code).toBe(0)
    const before = (await cli(env, 'audit', 'verify')).out

    const r = await cli(env, 'revoke', '--role', 'pilot', '--dry-run')
    expect(r).toMatchObject({ code: 0, err: '' })
    expect(r.out).toBe('dry run: would revoke 2 live tokens (role pilot); nothing written')
    const c = await cli(env, 'revoke', '--client', 'pilot-factory', '--dry-run')
    expect(c.out).toBe('dry run: would block new tokens for client pilot-factory at every trusted issuer; 5 live tokens issued to it would stay valid; nothing written')

    expect((await cli(env, 'audit', 'verify')).out).toBe(before)
    expect((await cli(env, 'revoke', 'list')).out).toMatch(/^ +1 {2}jti +jti-2 /)
    expect((await cli(env, 'revoke', 'list')).out.split('\n')).toHaveLength(1)
  })

  it('binds --sub or --client to a trusted issuer with --iss, and says when it applies at every issuer', async () => {
    const { env } = await seeded(1)
    const config = join(tempDir(), 'broker.yaml')
    writeFileSync(config, 'iam:\n  issuers:\n    - issuer: https://iam.example.org/\n')
    const withIam = { ...env, CTB_CONFIG: config }
    expect((await cli(withIam, 'revoke', '--client', 'factory')).out.split('\n')[0]).toMatch(/^revoked client factory at every trusted issuer \(id 1\)/)
    expect((await cli(withIam, 'revoke', '--sub', 'alice', '--iss', 'https://iam.example.org/')).out.split('\n')[0]).toMatch(/^revoked sub alice at https:\/\/iam\.example\.org\/ \(id 2\)/)
    const bad = await cli(withIam, 'revoke', '--sub', 'alice', '--iss', 'https://other.example.org/')
    expect([bad.code, bad.err]).toEqual([1, 'condor-token-broker: iss "https://other.example.org/" is not a trusted IAM issuer (trusted: https://iam.example.org/)'])
    expect((await cli(withIam, 'revoke', 'list')).out).toMatch(/alice  revoked .* iss https:\/\/iam\.example\.org\//)
  })

  it('needs exactly one selector', async () => {
    const { env } = await seeded(1)
    expect((await cli(env, 'revoke', '--role', 'a', '--sub', 'b')).code).toBe(2)
    expect((await cli(env, 'revoke', '--sub', 'bad"quote')).code).toBe(1)
  })
})

describe('audit verify on a database an insider wrote to', () => {
  /** Appends a record the way an insider with SQL but no broker code would: the documented hash, then the head. */
  function append(file: string, event: object): number {
    const db = new DatabaseSync(file)
    try {
      const head = db.prepare('SELECT seq, hash FROM audit_head WHERE id = 1').get() as { seq: number; hash: string }
      const seq = head.seq + 1
      const body = JSON.stringify(event)
      const hash = documentedHash(seq, head.hash, body)
      const e = event as { type: string; caller: { sub: string } }
      db.prepare('INSERT INTO audit_log (seq, time, type, caller_sub, body, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)').run(seq, 1_800_000_100, e.type, e.caller.sub, body, head.hash, hash)
      db.prepare('UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1').run(seq, hash)
      return seq
    } finally { db.close() }
  }

  it('names a deleted chain head in one line and exits 1, not as an internal error', async () => {
    const { env, file } = await seeded(5)
    const db = new DatabaseSync(file)
    db.exec('DELETE FROM audit_head')
    db.close()
    const r = await cli(env, 'audit', 'verify')
    expect({ code: r.code, err: r.err }).toEqual({ code: 1, err: '' })
    expect(r.out.split('\n')).toEqual([
      'audit chain BROKEN at record seq 6: the chain head (table audit_head) is missing, so records cut off the end cannot be ruled out (5 records checked)',
      'revocations UNVERIFIED: the audit chain is broken, so it cannot vouch for the 0 rows of the revocations table',
      ANCHORS_UNCHECKED,
    ])
  })

  it.each([
    ['token.revoked', { revocation: { id: 1, kind: 'site', value: 'cloud-a' } }, 'revocation'],
    ['token.unrevoked', { lift: { id: 1 } }, 'lift'],
  ])('names a %s record whose body states nothing well-formed, and exits 1', async (type, detail, what) => {
    const { env, file } = await seeded(5)
    const seq = append(file, { caller: { sub: 'cli:root' }, detail, time: 1_800_000_100, type })
    const r = await cli(env, 'audit', 'verify')
    expect({ code: r.code, err: r.err }).toEqual({ code: 1, err: '' })
    expect(r.out.split('\n')).toEqual([
      expect.stringMatching(/^audit chain OK: 6 records, seq 1\.\.6, head [0-9a-f]{64}$/),
      // seeded() writes without the audit MAC key, as a broker before MACs did.
      'audit MACs: none yet (every record was written before MACs began; the next one the broker writes starts them)',
      `revocations DIFFER: the ${type} record at seq ${seq} states no well-formed ${what} (not written by the broker, or corrupted)`,
      ANCHORS_UNCHECKED,
    ])
  })

  it('reports a checkpoint whose revocations are not well-formed as a difference, not as an internal error', async () => {
    const { env, file } = await seeded(5)
    // Keys in canonical order, so the body is as the broker would store it; only its detail is nonsense.
    const seq = append(file, { caller: { sub: 'retention' }, detail: { lifts: [null], revocations: [null, 7] }, time: 1_800_000_100, type: 'audit.checkpoint' })
    const r = await cli(env, 'audit', 'verify')
    expect({ code: r.code, err: r.err }).toEqual({ code: 1, err: '' })
    expect(r.out.split('\n')).toEqual([
      expect.stringMatching(/^audit chain OK: 6 records, seq 1\.\.6, head [0-9a-f]{64}$/),
      expect.stringMatching(/^audit MACs: none yet /),
      `revocations DIFFER: the record at seq ${seq} states 3 revocations or lifts that are not well-formed`,
      ANCHORS_UNCHECKED,
    ])
  })
})
