import { copyFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { expect, it } from 'vitest'
import { anchorKeyFrom } from '../../src/audit/anchor.ts'
import { runCli } from '../../src/cli/main.ts'
import { auditAnchorFile, loadConfig } from '../../src/config.ts'
import { readAuditMacKey } from '../../src/keys/audit_mac_key.ts'
import { ensureAndLoadKeys } from '../../src/keys/signing_keys.ts'
import { anchorFile } from '../../src/storage/anchor_file.ts'
import { SqliteStore } from '../../src/storage/sqlite_store.ts'
import { tempDir } from '../support/tmp.ts'
import { issued } from './audit_log.contract.ts'

const NOW = Math.floor(Date.now() / 1000)

async function cli(env: NodeJS.ProcessEnv, ...argv: string[]) {
  const out: string[] = []
  const err: string[] = []
  const code = await runCli(argv, { out: (s) => out.push(s), err: (s) => err.push(s), env })
  return { code, out: out.join('\n'), err: err.join('\n') }
}

/**
 * A development data dir whose log a broker checked at seq 6 and sealed both anchors for (the database's and
 * the file's), as serve's start-up check does, with `after` records appended since.
 */
async function anchored(after: number) {
  const dataDir = join(tempDir(), 'data')
  const env = { CTB_DATA_DIR: dataDir, CTB_TRUST_DOMAIN: 'pool.example.org' }
  const config = loadConfig({ env })
  const idtoken = ensureAndLoadKeys(config, NOW).keys.idtoken
  // The CLI's first write makes the audit MAC key and opens the MAC era (seq 1), then the revocation.
  expect((await cli(env, 'revoke', '--jti', 'jti-0', '--reason', 'stolen')).code).toBe(0)
  const file = join(dataDir, 'audit.db')
  const store = new SqliteStore({ file, writer: 'inline', auditMac: readAuditMacKey(join(dataDir, 'keys', 'audit_mac.key')) })
  for (let i = 1; i <= 4; i++) await store.record(issued(i, { time: NOW, exp: NOW + 3600 }))
  const copy = anchorFile(auditAnchorFile(config))
  expect((await store.verifyRevocations({ anchorKey: anchorKeyFrom(idtoken.hmac), anchorCopy: copy })).ok).toBe(true)
  for (let i = 5; i < 5 + after; i++) await store.record(issued(i, { time: NOW, exp: NOW + 3600 }))
  await store.close()
  return { env, dataDir, file, anchorPath: auditAnchorFile(config) }
}

function sql(file: string, text: string): void {
  const db = new DatabaseSync(file)
  try { db.exec(text) } finally { db.close() }
}

it('a clean log passes, with one line per anchor saying it was compared', async () => {
  const { env, anchorPath } = await anchored(2)
  const r = await cli(env, 'audit', 'verify')
  expect({ code: r.code, err: r.err }).toEqual({ code: 0, err: '' })
  expect(r.out.split('\n').slice(3)).toEqual([
    'audit anchor in the database: checked (the log still holds seq 6 as a check verified it)',
    `audit anchor in ${anchorPath}: checked (the log still holds seq 6 as a check verified it)`,
  ])
})

it('a log cut back below the anchor (records deleted, head set back) fails, naming the anchor', async () => {
  const { env, file, anchorPath } = await anchored(2)
  // The insider's cut: seq 5..8 gone, the head moved back to seq 4. The chain left is whole.
  sql(file, "DELETE FROM audit_log WHERE seq > 4; UPDATE audit_head SET seq = 4, hash = (SELECT hash FROM audit_log WHERE seq = 4) WHERE id = 1")
  const r = await cli(env, 'audit', 'verify')
  expect(r.code).toBe(1)
  expect(r.out.split('\n')[0]).toMatch(/^audit chain OK: 4 records, seq 1\.\.4, /)
  const departs = 'the audit log ends at seq 4, but an earlier check verified it up to seq 6 (records cut off the end, or an older copy of the database restored: if on purpose, delete both anchors as docs/audit.md says)'
  expect(r.out.split('\n').slice(3)).toEqual([
    `audit anchor in the database: DEPARTS: ${departs}`,
    `audit anchor in ${anchorPath}: DEPARTS: ${departs}`,
  ])
})

it('an older copy of the database restored (its own anchor gone with it) fails by the copy outside the database', async () => {
  const dataDir = join(tempDir(), 'data')
  const env = { CTB_DATA_DIR: dataDir, CTB_TRUST_DOMAIN: 'pool.example.org' }
  expect((await cli(env, 'revoke', '--jti', 'jti-0', '--reason', 'stolen')).code).toBe(0)
  const file = join(dataDir, 'audit.db')
  const backup = join(dataDir, '..', 'backup.db')
  copyFileSync(file, backup)
  const { anchorPath } = await (async () => {
    const config = loadConfig({ env })
    const idtoken = ensureAndLoadKeys(config, NOW).keys.idtoken
    const store = new SqliteStore({ file, writer: 'inline', auditMac: readAuditMacKey(join(dataDir, 'keys', 'audit_mac.key')) })
    for (let i = 1; i <= 3; i++) await store.record(issued(i, { time: NOW, exp: NOW + 3600 }))
    await store.verifyRevocations({ anchorKey: anchorKeyFrom(idtoken.hmac), anchorCopy: anchorFile(auditAnchorFile(config)) })
    await store.close()
    return { anchorPath: auditAnchorFile(config) }
  })()
  for (const suffix of ['-wal', '-shm']) rmSync(`${file}${suffix}`, { force: true })
  copyFileSync(backup, file)
  const r = await cli(env, 'audit', 'verify')
  expect(r.code).toBe(1)
  expect(r.out.split('\n')[0]).toMatch(/^audit chain OK: 2 records, seq 1\.\.2, /)
  expect(r.out.split('\n').slice(3)).toEqual([
    'audit anchor in the database: absent',
    `audit anchor in ${anchorPath}: DEPARTS: the audit log ends at seq 2, but an earlier check verified it up to seq 5 (records cut off the end, or an older copy of the database restored: if on purpose, delete both anchors as docs/audit.md says)`,
  ])
})

it('the whole MAC era deleted and written again without MACs fails at the record the anchor names', async () => {
  const { env, file, anchorPath } = await anchored(0)
  // The insider's rewrite: a chain of 6 records without MACs (no key needed), no revocation, its own empty
  // anchor table. Checked on its own it is whole and looks written before MACs began.
  const forged = join(tempDir(), 'forged.db')
  const store = new SqliteStore({ file: forged, writer: 'inline' })
  for (let i = 1; i <= 6; i++) await store.record(issued(i, { time: NOW, exp: NOW + 3600 }))
  await store.close()
  for (const suffix of ['-wal', '-shm']) rmSync(`${file}${suffix}`, { force: true })
  copyFileSync(forged, file)
  const r = await cli(env, 'audit', 'verify')
  expect(r.code).toBe(1)
  // The anchor also says MACs began at seq 1, so the records without them are named as well.
  expect(r.out.split('\n')[0]).toBe('audit chain BROKEN at record seq 1: record has no MAC, but the broker has put one on every record since seq 1 (written outside the broker) (1 records checked)')
  expect(r.out.split('\n').slice(-2)).toEqual([
    'audit anchor in the database: absent',
    `audit anchor in ${anchorPath}: DEPARTS: record seq 6 is not the record an earlier check verified (its hash changed: records rewritten with their hashes recomputed, or another database)`,
  ])
})

it('an anchor sealed under another IDTOKEN key, and one that is not an anchor, are named and not compared', async () => {
  const { env, anchorPath } = await anchored(0)
  writeFileSync(anchorPath, `a1.${'0'.repeat(64)}.{"seq":6}\n`, { mode: 0o600 })
  let r = await cli(env, 'audit', 'verify')
  expect([r.code, r.out.split('\n')[4]]).toEqual([0, `audit anchor in ${anchorPath}: sealed under another key (the IDTOKEN key changed since it was sealed); not compared`])
  writeFileSync(anchorPath, 'garbage\n', { mode: 0o600 })
  r = await cli(env, 'audit', 'verify')
  expect([r.code, r.out.split('\n')[4]]).toEqual([0, `audit anchor in ${anchorPath}: unreadable (not a sealed anchor); not compared`])
})

it('without the IDTOKEN key it says the anchors were not checked', async () => {
  const { env, dataDir } = await anchored(0)
  rmSync(join(dataDir, 'keys', 'condor'), { recursive: true, force: true })
  const r = await cli(env, 'audit', 'verify')
  expect(r.code).toBe(0)
  expect(r.out.split('\n')[3]).toMatch(/^audit anchors UNCHECKED: cannot read the IDTOKEN key that seals them \(.+\); records cut off the end or an older copy restored would pass$/)
})
