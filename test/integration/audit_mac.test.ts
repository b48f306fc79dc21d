import { chmodSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.ts'
import { readAuditMacKey } from '../../src/keys/audit_mac_key.ts'
import { openBrokerStore } from '../../src/storage/open_store.ts'
import { runCli } from '../../src/cli/main.ts'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
import { tempDir } from '../support/tmp.ts'
import { appendForged, auditMacScenarios, type MacHarness } from './audit_mac.scenarios.ts'
import { issued } from './audit_log.contract.ts'

let dataDir = ''

/** Writes the audit MAC key file where the CLI reads it (data_dir/keys/audit_mac.key), or a refused one. */
function keyFile(key: Buffer | undefined): void {
  const file = join(dataDir, 'keys', 'audit_mac.key')
  mkdirSync(join(dataDir, 'keys'), { recursive: true, mode: 0o700 })
  rmSync(file, { force: true })
  writeFileSync(file, `${(key ?? Buffer.alloc(32)).toString('base64')}\n`, { mode: 0o600 })
  // Readable by everyone: the broker refuses such a key file, as it does every other key file.
  if (!key) chmodSync(file, 0o644)
}

/** SQL on the current database file, as the insider runs it. */
async function sql(text: string, params: unknown[] = []): Promise<Array<Record<string, unknown>>> {
  const db = new DatabaseSync(join(dataDir, 'audit.db'))
  try {
    const st = db.prepare(text.replace(/\$(\d+)/g, '?$1'))
    return /^\s*SELECT/i.test(text) ? st.all(...(params as never[])) as Array<Record<string, unknown>> : (st.run(...(params as never[])), [])
  } finally { db.close() }
}

for (const writer of ['inline', 'thread'] as const) {
  auditMacScenarios(`sqlite (${writer} writer)`, {
    async fresh() { dataDir = join(tempDir(), 'data') },
    async open(mac) { return new SqliteStore({ file: join(dataDir, 'audit.db'), writer, ...(mac ? { auditMac: mac } : {}) }) },
    sql,
    async downgrade() { await sql('DROP INDEX audit_macs_started'); await sql('ALTER TABLE audit_log DROP COLUMN mac'); await sql('PRAGMA user_version = 12') },
    async auditVerify(key) {
      keyFile(key)
      const out: string[] = []
      const code = await runCli(['audit', 'verify'], { out: (s) => out.push(s), err: () => {}, env: { CTB_DATA_DIR: dataDir, CTB_TRUST_DOMAIN: 'pool.example.org' } })
      return { code, out: out.join('\n') }
    },
  })
}

describe('records the CLI writes', () => {
  const NOW = Math.floor(Date.now() / 1000)
  const cli = async (env: NodeJS.ProcessEnv, ...argv: string[]) => {
    const out: string[] = []
    const err: string[] = []
    const code = await runCli(argv, { out: (s) => out.push(s), err: (s) => err.push(s), env })
    return { code, out: out.join('\n'), err: err.join('\n') }
  }

  it('revoke, lift and prune write records with MACs that audit verify and the start-up check accept; a checkpoint carries where MACs began', async () => {
    dataDir = join(tempDir(), 'data')
    const file = join(dataDir, 'audit.db')
    const env = { CTB_DATA_DIR: dataDir, CTB_TRUST_DOMAIN: 'pool.example.org' }
    // Three records from 2020, written before MACs (by a store without the key).
    const old = new SqliteStore({ file, writer: 'inline' })
    for (let i = 1; i <= 3; i++) await old.record(issued(i, { time: 1_600_000_000 + i, exp: NOW + 3600 }))
    await old.close()

    expect((await cli(env, 'revoke', '--jti', 'jti-1', '--reason', 'stolen')).code).toBe(0)
    expect((await cli(env, 'revoke', 'lift', '1', '--reason', 'found')).code).toBe(0)
    const key = readAuditMacKey(join(dataDir, 'keys', 'audit_mac.key'))
    let v = await cli(env, 'audit', 'verify')
    expect(v.code).toBe(0)
    // Seq 4 opens the MAC era (the CLI's first record with the key), then the revocation and its lift.
    expect(v.out.split('\n')).toEqual([
      expect.stringMatching(/^audit chain OK: 6 records, seq 1\.\.6, head [0-9a-f]{64}$/),
      `audit MACs OK: every record from seq 4 to 6 carries the broker's MAC (key ${key.kid}); records 1..3 were written before MACs began`,
      'revocations OK: 1 rows match the audit chain',
      // No IDTOKEN key in this data dir (nothing ran serve or keys init): the anchors cannot be read.
      expect.stringMatching(/^audit anchors UNCHECKED: cannot read the IDTOKEN key that seals them /),
    ])

    const p = await cli(env, 'audit', 'prune', '--days', '1')
    expect(p.out).toBe('pruned 3 records older than 1 days; checkpoint is record 7')
    v = await cli(env, 'audit', 'verify')
    expect([v.code, v.out.split('\n')[1]]).toEqual([0, `audit MACs OK: every record from seq 4 to 7 carries the broker's MAC (key ${key.kid})`])

    const store = new SqliteStore({ file, writer: 'inline', auditMac: key })
    expect(await store.verifyRevocations({ anchorKey: Buffer.alloc(32, 1) })).toMatchObject({ ok: true })
    // Retention removes the record that opened the MAC era too: its checkpoint carries where they began.
    expect(await store.prune(NOW + 60, NOW)).toEqual({ pruned: 4, checkpointSeq: 8 })
    const [checkpoint] = (await store.query({ type: 'audit.checkpoint', limit: 1 })).records
    expect(checkpoint!.event.detail).toMatchObject({ prunedThroughSeq: 7, macFrom: 4 })
    await store.close()

    // Without the key, audit verify can only tell that a record lacks a MAC: the checkpoint says it must have one.
    expect(await appendForged({ sql } as MacHarness, issued(9, { time: NOW, exp: NOW + 3600 }))).toBe(9)
    chmodSync(join(dataDir, 'keys', 'audit_mac.key'), 0o644)
    v = await cli(env, 'audit', 'verify')
    expect(v.code).toBe(1)
    expect(v.out.split('\n')[0]).toBe('audit chain BROKEN at record seq 9: record has no MAC, but the broker has put one on every record since seq 4 (written outside the broker) (2 records checked)')
  })

  it('a store a command opened to read without the key refuses to append, so nothing reaches the log without a MAC', async () => {
    dataDir = join(tempDir(), 'data')
    const config = loadConfig({ env: { CTB_DATA_DIR: dataDir, CTB_TRUST_DOMAIN: 'pool.example.org' } })
    const store = await openBrokerStore(config, { sqliteWriter: 'inline', auditMac: undefined })
    try {
      await expect(store.record(issued(1, { time: NOW, exp: NOW + 3600 }))).rejects.toThrow('this command opened the audit log only to read it (without the audit MAC key) and appends nothing to it')
      await expect(store.revoke({ kind: 'jti', value: 'jti-1', revokedAt: NOW, until: NOW + 3600 }, { type: 'token.revoked', time: NOW, caller: { sub: 'cli:admin' }, jti: 'jti-1', decision: 'allow' })).rejects.toThrow('appends nothing')
    } finally {
      await store.close()
    }
    expect(await sql('SELECT count(*) AS n FROM audit_log')).toEqual([{ n: 0 }])
    expect(await sql('SELECT count(*) AS n FROM revocations')).toEqual([{ n: 0 }])
  })

  it('revoke lift --dry-run lifts nothing and writes nothing, with the key or without it', async () => {
    dataDir = join(tempDir(), 'data')
    const env = { CTB_DATA_DIR: dataDir, CTB_TRUST_DOMAIN: 'pool.example.org' }
    expect((await cli(env, 'revoke', '--jti', 'jti-1', '--reason', 'stolen')).code).toBe(0)
    const head = async () => (await sql('SELECT seq FROM audit_head WHERE id = 1'))[0]!.seq
    const before = await head()
    // --dry-run is revoke's ("write nothing"); a lift has no dry run, so it is a usage error, not a lift.
    const dry = await cli(env, 'revoke', 'lift', '1', '--dry-run')
    expect([dry.code, dry.err]).toEqual([2, 'condor-token-broker: revoke lift has no --dry-run (see revoke list for what it would lift)'])
    // A host that cannot read the key: still no lift, and above all no record without a MAC.
    chmodSync(join(dataDir, 'keys', 'audit_mac.key'), 0o644)
    expect((await cli(env, 'revoke', 'lift', '1', '--dry-run')).code).toBe(2)
    chmodSync(join(dataDir, 'keys', 'audit_mac.key'), 0o600)
    expect(await head()).toBe(before)
    expect(await sql('SELECT lifted_at FROM revocations WHERE id = 1')).toEqual([{ lifted_at: null }])
    const v = await cli(env, 'audit', 'verify')
    expect(v.code).toBe(0)
  })
})

describe('a missing audit MAC key outside production', () => {
  const cli = async (env: NodeJS.ProcessEnv, ...argv: string[]) => {
    const out: string[] = []
    const err: string[] = []
    const code = await runCli(argv, { out: (s) => out.push(s), err: (s) => err.push(s), env })
    return { code, out: out.join('\n'), err: err.join('\n') }
  }

  it('a command that only reads never creates it: the MACs are reported unchecked (exit 3), and the first write creates it', async () => {
    dataDir = join(tempDir(), 'data')
    const env = { CTB_DATA_DIR: dataDir, CTB_TRUST_DOMAIN: 'pool.example.org' }
    const keyPath = join(dataDir, 'keys', 'audit_mac.key')
    // No log yet: verify says so and creates neither the log nor the key.
    expect((await cli(env, 'audit', 'verify')).code).toBe(1)
    expect(existsSync(join(dataDir, 'audit.db'))).toBe(false)
    // A log a version before MACs wrote (empty here): read without the key, the MACs are unchecked.
    await new SqliteStore({ file: join(dataDir, 'audit.db') }).close()
    const v = await cli(env, 'audit', 'verify')
    expect(v.code).toBe(3)
    expect(v.out.split('\n')[1]).toMatch(/^audit MACs UNCHECKED: no audit MAC key \(no audit MAC key at /)
    expect((await cli(env, 'audit', 'list')).code).toBe(0)
    expect(existsSync(keyPath)).toBe(false)
    // A fresh development log has no MACs yet, so the first writer may make the key up.
    expect((await cli(env, 'revoke', '--jti', 'jti-1', '--reason', 'stolen')).code).toBe(0)
    expect(existsSync(keyPath)).toBe(true)
    expect((await cli(env, 'audit', 'verify')).code).toBe(0)
  })

  it('once the log carries MACs, a lost key is not replaced by a new one: reads report them unchecked, writes are refused in one line', async () => {
    dataDir = join(tempDir(), 'data')
    const env = { CTB_DATA_DIR: dataDir, CTB_TRUST_DOMAIN: 'pool.example.org' }
    const keyPath = join(dataDir, 'keys', 'audit_mac.key')
    expect((await cli(env, 'revoke', '--jti', 'jti-1', '--reason', 'stolen')).code).toBe(0)
    // Seq 1 is the audit.macs_started statement the CLI wrote with its first record.
    expect(await sql("SELECT seq FROM audit_log WHERE type = 'audit.macs_started'")).toEqual([{ seq: 1 }])
    rmSync(keyPath)

    // Every command that only reads opens the store as a reader (cliStoreOptions in open_store.ts): with the key
    // it could read, or none, but never the writer's, which would be made up or refused here.
    for (const argv of [['audit', 'verify'], ['audit', 'list'], ['audit', 'export'], ['revoke', 'list'], ['revoke', 'condor'], ['credential', 'list'], ['pilot', 'list']]) {
      const r = await cli(env, ...argv)
      expect([argv.join(' '), r.code === 0 || r.code === 3, existsSync(keyPath)]).toEqual([argv.join(' '), true, false])
    }
    const v = await cli(env, 'audit', 'verify')
    expect(v.code).toBe(3)
    expect(v.out.split('\n')[1]).toMatch(/^audit MACs UNCHECKED: no audit MAC key/)

    const head = await sql('SELECT seq FROM audit_head WHERE id = 1')
    const w = await cli(env, 'revoke', '--jti', 'jti-2', '--reason', 'stolen')
    expect(w.code).toBe(1)
    expect(w.err).toBe(`condor-token-broker: the audit MAC key file ${keyPath} is missing, but the audit log carries MACs since seq 1: restore the key file from a backup (a new key would leave every MAC'd record failing its check); nothing was written`)
    expect(existsSync(keyPath)).toBe(false)
    expect(await sql('SELECT seq FROM audit_head WHERE id = 1')).toEqual(head)
  })

  it('keys init does not make up a new key for a log that carries MACs, and creates none of the others either', async () => {
    dataDir = join(tempDir(), 'data')
    const env = { CTB_DATA_DIR: dataDir, CTB_TRUST_DOMAIN: 'pool.example.org' }
    const keyPath = join(dataDir, 'keys', 'audit_mac.key')
    expect((await cli(env, 'revoke', '--jti', 'jti-1', '--reason', 'stolen')).code).toBe(0)
    rmSync(keyPath)
    const r = await cli(env, 'keys', 'init')
    expect({ code: r.code, out: r.out }).toEqual({ code: 1, out: '' })
    expect(r.err).toBe(`condor-token-broker: the audit MAC key file ${keyPath} is missing, but the audit log carries MACs since seq 1: restore the key file from a backup (a new key would leave every MAC'd record failing its check); keys init created nothing`)
    expect(existsSync(keyPath)).toBe(false)
  })
})
