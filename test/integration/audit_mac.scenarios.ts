import { randomBytes } from 'node:crypto'
import { expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/audit_log.ts'
import { auditMacKey, type AuditMacKey } from '../../src/audit/record_mac.ts'
import type { BrokerStore } from '../../src/storage/chained_store.ts'
import { issued } from './audit_log.contract.ts'
import { canonicalBody, documentedHash } from '../support/forged_record.ts'

/**
 * The insider of docs/audit.md: SQL on the broker's database, none of its keys. Run against SQLite
 * (test/integration/audit_mac.test.ts) and PostgreSQL (test/interop/audit_mac_postgres.test.ts).
 */
export interface MacHarness {
  /** A fresh, empty database for one scenario. */
  fresh(): Promise<void>
  /** Opens the current database as the broker would, with this audit MAC key (or none: an old or keyless writer). */
  open(mac: AuditMacKey | undefined): Promise<BrokerStore>
  /** SQL straight on the database, `$1`-style parameters. */
  sql(text: string, params?: unknown[]): Promise<Array<Record<string, unknown>>>
  /**
   * Takes the current database back to the schema before MACs, as docs/audit.md says to go back a step
   * (column and index dropped, schema version lowered), so the next open migrates it again.
   */
  downgrade(): Promise<void>
  /** `audit verify` on the command line, with the key file the harness wrote for `key` (undefined: none readable). */
  auditVerify(key: Buffer | undefined): Promise<{ code: number; out: string }>
}

/**
 * Appends `event` the way the insider would: the documented hash over seq, the head's hash and the body,
 * every indexed column agreeing with the body, and the head moved on. Returns its seq.
 */
export async function appendForged(h: MacHarness, event: AuditEvent, mac: string | null = null): Promise<number> {
  const [head] = await h.sql('SELECT seq, hash FROM audit_head WHERE id = 1')
  const seq = Number(head!.seq) + 1
  const body = canonicalBody(event)
  const hash = documentedHash(seq, String(head!.hash), body)
  const cols = [event.time, event.type, event.requestId ?? null, event.caller?.iss ?? null, event.caller?.sub ?? null, event.caller?.client_id ?? null,
    event.role ?? null, event.tokenKind ?? null, event.issuedSub ?? null, event.jti ?? null, event.decision ?? null, event.exp ?? null, event.site ?? null]
  await h.sql(`INSERT INTO audit_log (seq, time, type, request_id, caller_iss, caller_sub, client_id, role, token_kind, issued_sub, jti, decision, exp, site, body, prev_hash, hash${mac !== null ? ', mac' : ''})
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17${mac !== null ? ', $18' : ''})`,
  [seq, ...cols, body, String(head!.hash), hash, ...(mac !== null ? [mac] : [])])
  await h.sql('UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1', [seq, hash])
  return seq
}

const ANCHOR_KEY = Buffer.alloc(32, 7)

const NOW = Math.floor(Date.now() / 1000)

/** A log of four issuances written before MACs, on the schema before MACs (as an upgrade finds it). */
async function preMacLog(h: MacHarness): Promise<void> {
  await h.fresh()
  const old = await h.open(undefined)
  for (let i = 1; i <= 4; i++) await old.record(issued(i, { time: NOW - 100 + i, exp: NOW + 3600 }))
  await old.close()
  await h.downgrade()
}

/** The insider's cut: every record after `seq` deleted and the head set back to it. */
async function cutBackTo(h: MacHarness, seq: number): Promise<void> {
  const [last] = await h.sql('SELECT hash FROM audit_log WHERE seq = $1', [seq])
  await h.sql('DELETE FROM audit_log WHERE seq > $1', [seq])
  await h.sql('UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1', [seq, last!.hash])
}


/** Chain broken at `seq` because the record there carries no MAC, as the start-up check and audit verify say it. */
function noMacAt(from: number): string {
  return `record has no MAC, but the broker has put one on every record since seq ${from} (written outside the broker)`
}

/** The reason a check gives for a MAC'd record right after MAC-less ones that is not the statement opening MACs. */
const macWithoutStart = 'record carries the broker\'s MAC but the record before it has none, and MACs begin only at an audit.macs_started record (records since MACs began were rewritten without them)'

export function auditMacScenarios(name: string, h: MacHarness): void {
  /** statement at 1, issuances 2..4, a jti revocation at 5, issuances 6..7: all written by the broker with `key`. */
  async function brokerWrote(key: AuditMacKey): Promise<void> {
    await h.fresh()
    const store = await h.open(key)
    for (let i = 1; i <= 3; i++) await store.record(issued(i, { time: NOW - 100 + i, exp: NOW + 3600 }))
    await store.revoke({ kind: 'jti', value: 'jti-2', revokedAt: NOW - 50, until: NOW + 3600, reason: 'stolen' }, { type: 'token.revoked', time: NOW - 50, caller: { sub: 'cli:admin' }, jti: 'jti-2', decision: 'allow' })
    for (let i = 4; i <= 5; i++) await store.record(issued(i, { time: NOW - 40 + i, exp: NOW + 3600 }))
    // The start-up check of that broker: it passes and seals an anchor.
    expect(await store.verifyRevocations({ anchorKey: ANCHOR_KEY })).toMatchObject({ ok: true })
    await store.close()
  }

  /** Both checks that must name `seq` with `reason`: the start-up (anchored) check, and audit verify. */
  async function bothName(key: Buffer, seq: number, reason: string, checked = seq): Promise<void> {
    const store = await h.open(auditMacKey(key))
    try {
      const started = await store.verifyRevocations({ anchorKey: ANCHOR_KEY })
      expect(started).toMatchObject({ ok: false, unverified: `audit chain broken at seq ${seq}: ${reason}` })
      const all = await store.verifyAll()
      expect(all.chain).toMatchObject({ ok: false, broken: { seq, reason } })
    } finally {
      await store.close()
    }
    const v = await h.auditVerify(key)
    expect(v.code).toBe(1)
    expect(v.out.split('\n')[0]).toBe(`audit chain BROKEN at record seq ${seq}: ${reason} (${checked} records checked)`)
  }

  it(`${name}: a forged lift appended with lifted_at set on its row is named by seq`, async () => {
    const raw = randomBytes(32)
    await brokerWrote(auditMacKey(raw))
    const [row] = await h.sql("SELECT id FROM revocations WHERE value = 'jti-2'")
    await h.sql('UPDATE revocations SET lifted_at = $1, lifted_by = $2 WHERE id = $3', [NOW, 'cli:admin', row!.id])
    const seq = await appendForged(h, {
      type: 'token.unrevoked', time: NOW, caller: { sub: 'cli:admin' }, jti: 'jti-2', decision: 'allow', reason: 'false alarm',
      detail: { lift: { id: Number(row!.id), liftedAt: NOW, liftedBy: 'cli:admin' } },
    })
    expect(seq).toBe(8)
    await bothName(raw, seq, noMacAt(1))
  })

  it(`${name}: a forged checkpoint vouching for a deleted prefix (a revocation in it) is named by seq`, async () => {
    const raw = randomBytes(32)
    await brokerWrote(auditMacKey(raw))
    const [last] = await h.sql('SELECT hash FROM audit_log WHERE seq = 5')
    await h.sql('DELETE FROM audit_log WHERE seq <= 5')
    await h.sql('DELETE FROM revocations')
    await h.sql('DELETE FROM audit_anchor')
    const seq = await appendForged(h, {
      type: 'audit.checkpoint', time: NOW, caller: { sub: 'retention' },
      detail: { before: NOW, prunedCount: 5, prunedLastHash: String(last!.hash), prunedThroughSeq: 5, revocations: [] },
    })
    await bothName(raw, seq, noMacAt(6), 3)
  })

  it(`${name}: a forged issuance record, and one carrying another record's MAC, are named by seq`, async () => {
    const raw = randomBytes(32)
    await brokerWrote(auditMacKey(raw))
    const seq = await appendForged(h, issued(99, { time: NOW, exp: NOW + 3600 }))
    await bothName(raw, seq, noMacAt(1))

    // Copying a MAC the broker wrote onto the forged record does not help: the MAC covers the record's hash.
    await h.sql('UPDATE audit_log SET mac = (SELECT mac FROM audit_log WHERE seq = 7) WHERE seq = $1', [seq])
    await bothName(raw, seq, 'MAC does not match the record (written outside the broker, or its MAC edited)')
  })

  it(`${name}: a record written without the key after MACs began (an old or keyless writer) is refused`, async () => {
    const raw = randomBytes(32)
    await brokerWrote(auditMacKey(raw))
    const keyless = await h.open(undefined)
    await keyless.record(issued(50, { time: NOW, exp: NOW + 3600 }))
    await keyless.close()
    await bothName(raw, 8, noMacAt(1))
  })

  it(`${name}: a database written before MACs keeps verifying; MACs start at the first record written with the key`, async () => {
    await preMacLog(h)
    const raw = randomBytes(32)
    const store = await h.open(auditMacKey(raw))
    expect(await store.verifyRevocations({ anchorKey: ANCHOR_KEY })).toMatchObject({ ok: true })
    await store.record(issued(5, { time: NOW, exp: NOW + 3600 }))
    const all = await store.verifyAll()
    // seq 5 states that MACs begin there; seq 6 is the issuance.
    expect(all.chain).toMatchObject({ ok: true, records: 6, macFrom: 5 })
    const records = []
    for await (const r of store.scan(5)) records.push(r.event)
    expect(records[0]).toMatchObject({ type: 'audit.macs_started', detail: { macFrom: 5 } })
    expect(await store.verifyRevocations({ anchorKey: ANCHOR_KEY })).toMatchObject({ ok: true })
    await store.close()
    const v = await h.auditVerify(raw)
    expect(v.code).toBe(0)
    expect(v.out.split('\n')[1]).toBe(`audit MACs OK: every record from seq 5 to 6 carries the broker's MAC (key ${auditMacKey(raw).kid}); records 1..4 were written before MACs began`)

    // A MAC-less record appended after that start is refused, with the key and without (its absence shows).
    const seq = await appendForged(h, issued(7, { time: NOW, exp: NOW + 3600 }))
    await bothName(raw, seq, noMacAt(5))
  })

  it(`${name}: the MAC era rewritten without MACs while the broker that opened it goes on writing is named`, async () => {
    // The upgrade's window: the start-up check sealed an anchor before MACs began (it carries no start), and
    // the broker remembers the start in memory, so it writes no second statement after the rewrite.
    await preMacLog(h)
    const raw = randomBytes(32)
    const store = await h.open(auditMacKey(raw))
    try {
      expect(await store.verifyRevocations({ anchorKey: ANCHOR_KEY })).toMatchObject({ ok: true })
      await store.record(issued(5, { time: NOW, exp: NOW + 3600 }))
      // The insider removes the statement (seq 5) and the record after it, and writes their own without MACs.
      await cutBackTo(h, 4)
      expect(await appendForged(h, issued(50, { time: NOW, exp: NOW + 3600 }))).toBe(5)
      expect(await appendForged(h, issued(51, { time: NOW, exp: NOW + 3600 }))).toBe(6)
      // The broker writes on: seq 7 carries its MAC, with no statement before it.
      await store.record(issued(6, { time: NOW, exp: NOW + 3600 }))
    } finally {
      await store.close()
    }
    // The start-up check's anchor already said MACs follow its head (4), so the anchored check names 5;
    // a check from seq 1 (audit verify has no anchor) names the broker's record that follows the rewrite.
    const store2 = await h.open(auditMacKey(raw))
    try {
      expect(await store2.verifyRevocations({ anchorKey: ANCHOR_KEY })).toMatchObject({ ok: false, unverified: `audit chain broken at seq 5: ${noMacAt(5)}` })
      expect((await store2.verifyAll()).chain).toMatchObject({ ok: false, broken: { seq: 7, reason: macWithoutStart } })
    } finally {
      await store2.close()
    }
    const v = await h.auditVerify(raw)
    expect([v.code, v.out.split('\n')[0]]).toEqual([1, `audit chain BROKEN at record seq 7: ${macWithoutStart} (7 records checked)`])
  })

  it(`${name}: the MAC era rewritten without MACs, then the broker restarted before it wrote again, is named at the start`, async () => {
    await preMacLog(h)
    const raw = randomBytes(32)
    const first = await h.open(auditMacKey(raw))
    // The upgraded broker's start-up check (the log has no MACs yet), then its first record opens them at 5.
    expect(await first.verifyRevocations({ anchorKey: ANCHOR_KEY })).toMatchObject({ ok: true })
    await first.record(issued(5, { time: NOW, exp: NOW + 3600 }))
    await first.close()
    // Before any later check, the insider writes 5.. again without MACs; the broker restarts and writes nothing first.
    await cutBackTo(h, 4)
    expect(await appendForged(h, issued(50, { time: NOW, exp: NOW + 3600 }))).toBe(5)
    const restarted = await h.open(auditMacKey(raw))
    try {
      // The start-up check's anchor said the keyed broker MACs every record after the head it saw (4).
      expect(await restarted.verifyRevocations({ anchorKey: ANCHOR_KEY })).toMatchObject({ ok: false, unverified: `audit chain broken at seq 5: ${noMacAt(5)}` })
    } finally {
      await restarted.close()
    }
  })

  it(`${name}: retention does not take a checkpoint without a MAC, appended after MACs began, as vouching for a deleted prefix`, async () => {
    // Records 1..4 are old enough to prune, 5..6 are not, all from before MACs; MACs begin at 7.
    await h.fresh()
    const old = await h.open(undefined)
    for (let i = 1; i <= 6; i++) await old.record(issued(i, { time: i <= 4 ? NOW - 10 * 86400 + i : NOW - 3600 + i, exp: NOW + 3600 }))
    await old.close()
    await h.downgrade()
    const raw = randomBytes(32)
    const keyed = await h.open(auditMacKey(raw))
    await keyed.record(issued(7, { time: NOW, exp: NOW + 3600 }))
    await keyed.close()
    // The insider deletes 1..2 and appends, at 9, a checkpoint without a MAC that says retention removed them.
    const [two] = await h.sql('SELECT hash FROM audit_log WHERE seq = 2')
    await h.sql('DELETE FROM audit_log WHERE seq <= 2')
    const seq = await appendForged(h, {
      type: 'audit.checkpoint', time: NOW, caller: { sub: 'retention' },
      detail: { before: NOW, prunedCount: 2, prunedLastHash: String(two!.hash), prunedThroughSeq: 2, revocations: [] },
    })
    expect(seq).toBe(9)
    const store = await h.open(auditMacKey(raw))
    try {
      // What the records read (3..5, all before MACs) do not show, the log does: MACs began at 7, before 9.
      await expect(store.prune(NOW - 5 * 86400, NOW)).rejects.toThrow('audit chain broken at seq 3: records before seq 3 are missing and no checkpoint vouches for their removal; not pruning (run "audit verify")')
      const [first] = await h.sql('SELECT min(seq) AS seq FROM audit_log')
      expect(Number(first!.seq)).toBe(3)
    } finally {
      await store.close()
    }
  })

  it(`${name}: without the key, audit verify checks the chain and says the MACs went unchecked (exit 3)`, async () => {
    const raw = randomBytes(32)
    await brokerWrote(auditMacKey(raw))
    const v = await h.auditVerify(undefined)
    expect(v.code).toBe(3)
    expect(v.out.split('\n')[0]).toMatch(/^audit chain OK: 7 records, seq 1\.\.7, head [0-9a-f]{64}$/)
    expect(v.out.split('\n')[1]).toMatch(/^audit MACs UNCHECKED: no audit MAC key \(.+\); records appended by someone with database access would pass$/)
  })
}
