import { afterEach, describe, expect, it } from 'vitest'
import type { AuditEvent } from '../../src/audit/audit_log.ts'
import { GENESIS_HASH, recordHash } from '../../src/audit/chain.ts'
import { checkRecordInChain } from '../../src/audit/record_check.ts'
import type { BrokerStore } from '../../src/storage/chained_store.ts'

/**
 * One suite for every audit backend (SPIRE's datastore sqltest pattern): SQLite and memory in `npm test`,
 * a real PostgreSQL server in `npm run test:interop`. The harness gives raw access to the rows, the way an
 * attacker with database access would have it.
 */
export interface StoreHarness {
  /** A new, empty store. */
  open(): Promise<BrokerStore>
  /** A second handle on the same database (another replica or process); absent for memory. */
  openPeer?(): Promise<BrokerStore>
  /** Runs a raw change against the rows of the store last opened. */
  tamper: {
    setBody(seq: number, body: string): Promise<void>
    setColumn(seq: number, column: 'issued_sub' | 'role' | 'type', value: string): Promise<void>
    deleteRecord(seq: number): Promise<void>
    deleteRevocation(id: number): Promise<void>
    /** Inserts a revocations row (next id) with no audit record, as a raw INSERT would. */
    insertRevocation(r: { kind: string; value: string; revokedAt: number; until: number }): Promise<void>
    setRevocationUntil(id: number, until: number): Promise<void>
    /** Deletes every record after `seq` and sets the head to record `seq`, as a consistent cut-back would. */
    truncateTo(seq: number): Promise<void>
    /** Deletes the sealed anchor the database keeps (table audit_anchor). */
    deleteAnchor(): Promise<void>
    /** Sets the token issuance horizon's exp (table issuance_horizon), as an UPDATE would. */
    setTokenHorizonExp(exp: number): Promise<void>
    /** Sets (or, with null, deletes) a role's row in role_generations. */
    setRoleGeneration(role: string, gen: number | null): Promise<void>
  }
  /** Makes every later write fail inside the transaction (e.g. a trigger); absent where no such failure exists. */
  breakWrites?(): Promise<void>
}

const T0 = 1_800_000_000

export function issued(i: number, over: Partial<AuditEvent> = {}): AuditEvent {
  return {
    type: 'token.issued',
    time: T0 + i,
    requestId: `req-${i}`,
    caller: { iss: 'https://iam.example.org/', sub: `caller-${i % 3}`, client_id: 'pilot-factory', groups: ['/atlas'] },
    clientAddress: '192.0.2.7',
    role: i % 2 === 0 ? 'pilot' : 'schedd',
    tokenKind: 'idtoken',
    issuedSub: `pilot-${i % 5}@pilots.pool.example.org`,
    jti: `jti-${i}`,
    scopes: ['ADVERTISE_STARTD', 'READ'],
    audience: [],
    exp: T0 + i + 3600,
    tokenSha256: 'ab'.repeat(32),
    policyRule: 'pilots-1',
    decision: 'allow',
    site: i % 4 === 0 ? 'SITE_A' : 'SITE_B',
    ...over,
  }
}

export function auditStoreContract(name: string, h: StoreHarness): void {
  describe(`audit store contract: ${name}`, () => {
    const open: BrokerStore[] = []
    const fresh = async () => { const s = await h.open(); open.push(s); return s }
    afterEach(async () => { for (const s of open.splice(0)) await s.close().catch(() => {}) })

    it('an empty store verifies with zero records', async () => {
      const s = await fresh()
      expect(await s.verify()).toEqual({ ok: true, records: 0, head: { seq: 0, hash: GENESIS_HASH }, firstSeq: 0 })
    })

    it('links each record to the previous one from the genesis hash and returns the event unchanged', async () => {
      const s = await fresh()
      await s.record(issued(1))
      await s.record(issued(2, { detail: { b: 1, a: { z: true, y: [1, 2] } } }))
      const recs = []
      for await (const r of s.scan()) recs.push(r)
      expect(recs.map((r) => r.seq)).toEqual([1, 2])
      expect(recs[0]!.prevHash).toBe(GENESIS_HASH)
      expect(recs[1]!.prevHash).toBe(recs[0]!.hash)
      expect(recs[1]!.event).toEqual(issued(2, { detail: { b: 1, a: { z: true, y: [1, 2] } } }))
      expect(recs[0]!.hash).toBe(recordHash(1, GENESIS_HASH, JSON.stringify(sortedIssued(1))))
      expect(await s.verify()).toMatchObject({ ok: true, records: 2, head: { seq: 2, hash: recs[1]!.hash } })
    })

    it('group-commits concurrent records into few transactions, one gap-free chain', async () => {
      const s = await fresh()
      await Promise.all(Array.from({ length: 600 }, (_, i) => s.record(issued(i + 1))))
      const st = s.commitStats()
      expect(st.items).toBe(600)
      expect(st.batches).toBeLessThan(60)
      const v = await s.verify()
      expect(v).toMatchObject({ ok: true, records: 600 })
      const seen = new Set<string>()
      for await (const r of s.scan()) seen.add(r.event.jti!)
      expect(seen.size).toBe(600)
    })

    it('filters by time range, caller, issued sub, role, jti, decision, type, site and request id, newest first', async () => {
      const s = await fresh()
      for (let i = 1; i <= 40; i++) await s.record(issued(i, i % 10 === 0 ? { decision: 'deny', type: 'token.denied', reason: 'no rule' } : {}))
      const all = async (q: Parameters<BrokerStore['query']>[0]) => (await s.query(q)).records.map((r) => r.event.jti)
      expect(await all({ limit: 3 })).toEqual(['jti-40', 'jti-39', 'jti-38'])
      expect(await all({ limit: 100, from: T0 + 5, to: T0 + 8 })).toEqual(['jti-8', 'jti-7', 'jti-6', 'jti-5'])
      expect(await all({ limit: 100, caller: 'caller-1', to: T0 + 10 })).toEqual(['jti-10', 'jti-7', 'jti-4', 'jti-1'])
      expect(await all({ limit: 100, issuedSub: 'pilot-2@pilots.pool.example.org' })).toEqual(['jti-37', 'jti-32', 'jti-27', 'jti-22', 'jti-17', 'jti-12', 'jti-7', 'jti-2'])
      expect(await all({ limit: 100, role: 'pilot', from: T0 + 30 })).toEqual(['jti-40', 'jti-38', 'jti-36', 'jti-34', 'jti-32', 'jti-30'])
      expect(await all({ limit: 100, jti: 'jti-13' })).toEqual(['jti-13'])
      expect(await all({ limit: 100, decision: 'deny' })).toEqual(['jti-40', 'jti-30', 'jti-20', 'jti-10'])
      expect(await all({ limit: 100, type: 'token.denied', role: 'pilot', to: T0 + 25 })).toEqual(['jti-20', 'jti-10'])
      expect(await all({ limit: 100, site: 'SITE_A', from: T0 + 20 })).toEqual(['jti-40', 'jti-36', 'jti-32', 'jti-28', 'jti-24', 'jti-20'])
      expect(await all({ limit: 100, role: 'nobody' })).toEqual([])
      // requestId is req-<i> (issued())
      expect(await all({ limit: 100, requestId: 'req-17' })).toEqual(['jti-17'])
    })

    it('counts issuances and denials per hour by role, site and kind, denials by reason, and live tokens by site and role', async () => {
      const s = await fresh()
      // T0 is a whole hour (1_800_000_000 / 3600 = 500_000), so the first three records share one bucket.
      await s.record(issued(0, { time: T0 + 10, exp: T0 + 100 }))
      await s.record(issued(1, { time: T0 + 20, exp: T0 + 9999, tokenKind: 'scitoken' }))
      await s.record(issued(2, { time: T0 + 3605, exp: T0 + 9999 }))
      const denial = (t: number, reason: string): AuditEvent => ({ type: 'token.denied', time: T0 + t, role: 'pilot', decision: 'deny', reason })
      await s.record(denial(30, 'no rule matches'))
      await s.record(denial(40, '<script>alert(1)</script>'))
      await s.record({ type: 'key.rotated', time: T0 + 50 })
      const sorted = <T>(rows: T[]) => [...rows].sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)))
      const range = { from: T0, to: T0 + 7200, bucketSeconds: 3600 }
      expect(sorted(await s.countByTime(range))).toEqual(sorted([
        { bucket: T0, type: 'token.denied', role: 'pilot', site: null, token_kind: null, count: 2 },
        { bucket: T0, type: 'token.issued', role: 'pilot', site: 'SITE_A', token_kind: 'idtoken', count: 1 },
        { bucket: T0, type: 'token.issued', role: 'schedd', site: 'SITE_B', token_kind: 'scitoken', count: 1 },
        { bucket: T0 + 3600, type: 'token.issued', role: 'pilot', site: 'SITE_B', token_kind: 'idtoken', count: 1 },
      ]))
      expect(sorted(await s.countDenialReasons({ from: T0, to: T0 + 7200 }))).toEqual(sorted([
        { reason: '<script>alert(1)</script>', count: 1 },
        { reason: 'no rule matches', count: 1 },
      ]))
      expect(await s.countDenialReasons({ from: T0 + 35, to: T0 + 7200 })).toEqual([{ reason: '<script>alert(1)</script>', count: 1 }])
      // A day bucket holds all of them; a range that ends before the second hour drops the last issuance.
      expect((await s.countByTime({ from: T0, to: T0 + 86400, bucketSeconds: 86400 })).reduce((n, r) => n + r.count, 0)).toBe(5)
      expect((await s.countByTime({ from: T0, to: T0 + 3599, bucketSeconds: 3600 })).reduce((n, r) => n + r.count, 0)).toBe(4)
      const live = await s.countLive({ now: T0 + 3700, since: T0 })
      expect([...live].sort((a, b) => String(a.role).localeCompare(String(b.role)))).toEqual([
        { site: 'SITE_B', role: 'pilot', count: 1 },
        { site: 'SITE_B', role: 'schedd', count: 1 },
      ])
    })

    it('pages with a cursor through equal timestamps without loss or duplicates', async () => {
      const s = await fresh()
      await Promise.all(Array.from({ length: 25 }, (_, i) => s.record(issued(i + 1, { time: T0 + Math.floor(i / 4) }))))
      const got: string[] = []
      let cursor: string | undefined
      for (let pages = 0; pages < 20; pages++) {
        const p = await s.query({ limit: 7, role: undefined, ...(cursor ? { cursor } : {}) })
        got.push(...p.records.map((r) => r.event.jti!))
        if (!p.nextCursor) break
        cursor = p.nextCursor
      }
      expect(got).toHaveLength(25)
      expect(new Set(got).size).toBe(25)
      await expect(s.query({ limit: 0 })).rejects.toThrow(/limit/)
      await expect(s.query({ limit: 5, cursor: 'not-a-cursor' })).rejects.toThrow(/cursor/)
    })

    it('verifies a live chain while records keep committing', async () => {
      const s = await fresh()
      for (let i = 1; i <= 20; i++) await s.record(issued(i))
      const writes = Promise.all(Array.from({ length: 300 }, (_, i) => s.record(issued(100 + i))))
      const v = await s.verify()
      await writes
      expect(v.ok).toBe(true)
      expect(await s.verify()).toMatchObject({ ok: true, records: 320 })
    })

    it('verify names an edited body', async () => {
      const s = await fresh()
      for (let i = 1; i <= 10; i++) await s.record(issued(i))
      const rec = (await s.query({ limit: 1, jti: 'jti-7' })).records[0]!
      await h.tamper.setBody(rec.seq, JSON.stringify(sortedIssued(7)).replace('pilot-2@', 'mallory@'))
      expect(await s.verify()).toMatchObject({ ok: false, broken: { seq: rec.seq, reason: expect.stringMatching(/edited/) } })
    })

    // Someone with write access to the database (the SQLite file, the PostgreSQL table) edits a body into
    // something that is not JSON, or not an event. Every read parsed it and failed: searches, exports, the
    // console's pages and the summary answered 500. The row is shown at its seq as unreadable instead, and
    // the checks name it as a chain fault (docs/audit.md: "body is not valid JSON").
    it('a body edited into something that is not JSON reads back as an unreadable record at its seq', async () => {
      const s = await fresh()
      for (let i = 1; i <= 5; i++) await s.record(issued(i, i === 4 ? { type: 'token.denied', decision: 'deny', reason: 'no rule' } : {}))
      await h.tamper.setBody(2, '{"caller":{"iss":"https://iam.exa')
      await h.tamper.setBody(4, 'not json')
      await h.tamper.setBody(5, '42')
      const page = await s.query({ limit: 10 })
      expect(page.records.map((r) => [r.seq, r.unreadable?.reason ?? r.event.jti])).toEqual([
        [5, 'body is not an audit event'], [4, 'body is not valid JSON'], [3, 'jti-3'], [2, 'body is not valid JSON'], [1, 'jti-1'],
      ])
      expect(page.records.find((r) => r.seq === 2)!.unreadable).toEqual({ reason: 'body is not valid JSON', body: '{"caller":{"iss":"https://iam.exa' })
      // Searches select by the indexed columns, which still place it (issued(2) is role pilot).
      expect((await s.query({ limit: 10, role: 'pilot' })).records.map((r) => r.seq)).toEqual([4, 2])
      const scanned = []
      for await (const r of s.scan()) scanned.push([r.seq, r.unreadable?.reason ?? 'readable'])
      expect(scanned).toEqual([[1, 'readable'], [2, 'body is not valid JSON'], [3, 'readable'], [4, 'body is not valid JSON'], [5, 'body is not an audit event']])
      const check = (await checkRecordInChain(s, 2))!
      expect([check.record.seq, check.record.unreadable?.reason, check.hashOk]).toEqual([2, 'body is not valid JSON', false])
      // The summary counts the unreadable denial apart, instead of failing on it.
      expect(await s.countDenialReasons({ from: T0, to: T0 + 10 })).toEqual([{ reason: null, count: 1, unreadable: true }])
      expect(await s.verify()).toMatchObject({ ok: false, broken: { seq: 2, reason: 'body is not valid JSON' } })
      expect(await s.verifyRevocations()).toMatchObject({ ok: false, unverified: 'audit chain broken at seq 2: body is not valid JSON' })
    })

    // JSON may escape U+0000 (a refusal's reason quotes what the caller sent); PostgreSQL's jsonb holds no such
    // character and refuses the cast with 22P05, not the 22P02 of text that is not JSON, so the summary failed.
    it('the summary counts a denial whose reason holds an escaped NUL', async () => {
      const s = await fresh()
      await s.record(issued(1, { type: 'token.denied', decision: 'deny', reason: 'invalid_scope: "a\u0000b"' }))
      await s.record(issued(2, { type: 'token.denied', decision: 'deny', reason: 'no rule' }))
      const counts = await s.countDenialReasons({ from: T0, to: T0 + 10 })
      expect(counts.sort((a, b) => (a.reason! < b.reason! ? -1 : 1))).toEqual([
        { reason: 'invalid_scope: "a\u0000b"', count: 1 }, { reason: 'no rule', count: 1 },
      ])
    })

    it('verify names a record whose indexed column was edited', async () => {
      const s = await fresh()
      for (let i = 1; i <= 5; i++) await s.record(issued(i))
      await h.tamper.setColumn(3, 'role', 'admin')
      expect(await s.verify()).toMatchObject({ ok: false, broken: { seq: 3, reason: expect.stringMatching(/column role/) } })
    })

    // The console's record page reads the rows as stored, so a column edited beside an untouched body shows.
    it('the record check names an indexed column edited beside an untouched body, and only on that record', async () => {
      const s = await fresh()
      for (let i = 1; i <= 5; i++) await s.record(issued(i))
      await h.tamper.setColumn(3, 'issued_sub', 'mallory@eps.pool.example.org')
      const edited = (await checkRecordInChain(s, 3))!
      expect(edited.hashOk).toBe(true)
      expect(edited.columnFaults).toEqual(['column issued_sub differs from the hashed body (record edited)'])
      expect(edited.record.event.issuedSub).not.toBe('mallory@eps.pool.example.org')
      for (const seq of [2, 4]) expect((await checkRecordInChain(s, seq))!.columnFaults).toEqual([])
    })

    it('verify names a deleted record and a truncated tail', async () => {
      const s = await fresh()
      for (let i = 1; i <= 6; i++) await s.record(issued(i))
      await h.tamper.deleteRecord(6)
      expect(await s.verify()).toMatchObject({ ok: false, broken: { seq: 6, reason: expect.stringMatching(/head/) } })
      await h.tamper.deleteRecord(3)
      expect(await s.verify()).toMatchObject({ ok: false, broken: { seq: 3, reason: expect.stringMatching(/missing/) } })
    })

    it('prunes old records behind a checkpoint that keeps the chain verifiable', async () => {
      const s = await fresh()
      for (let i = 1; i <= 10; i++) await s.record(issued(i))
      const r = await s.prune(T0 + 5, T0 + 100)
      expect(r).toEqual({ pruned: 4, checkpointSeq: 11 })
      const seqs: number[] = []
      for await (const x of s.scan()) seqs.push(x.seq)
      expect(seqs).toEqual([5, 6, 7, 8, 9, 10, 11])
      const cp = (await s.query({ limit: 1, type: 'audit.checkpoint' })).records[0]!
      expect(cp.event.detail).toMatchObject({ prunedThroughSeq: 4, prunedCount: 4, before: T0 + 5 })
      expect(await s.verify()).toMatchObject({ ok: true, records: 7, firstSeq: 5 })
      expect(await s.prune(T0 + 5, T0 + 101)).toEqual({ pruned: 0 })
      await s.record(issued(12))
      expect(await s.verify()).toMatchObject({ ok: true, records: 8 })
      // Deleting more of the prefix than the checkpoint vouches for is caught.
      await h.tamper.deleteRecord(5)
      expect(await s.verify()).toMatchObject({ ok: false, broken: { seq: 6, reason: expect.stringMatching(/no checkpoint/) } })
    })

    // serve's shutdown abandons a prune through its signal (audit/retention.ts): wherever the abort lands
    // before the delete is submitted, nothing may be deleted and no checkpoint appended; one that is not
    // abandoned deletes and checkpoints together. Each point the store looks at the signal is tried in turn.
    it('a prune abandoned at any point before its delete leaves every record and no checkpoint', async () => {
      const seeded = async () => { const s = await fresh(); for (let i = 1; i <= 10; i++) await s.record(issued(i)); return s }
      /** Stands in for an AbortSignal that fires at its `at`-th look (0: never), counting the looks. */
      const firingAt = (at: number) => {
        const f = { looks: 0, aborted: false, reason: undefined as unknown, throwIfAborted() { if (++f.looks === at) { f.aborted = true; f.reason = new Error('stopping'); throw f.reason } } }
        return f
      }
      const counting = firingAt(0)
      const whole = await seeded()
      expect(await whole.prune(T0 + 5, T0 + 100, { signal: counting as unknown as AbortSignal })).toEqual({ pruned: 4, checkpointSeq: 11 })
      expect(await whole.verify()).toMatchObject({ ok: true, records: 7, firstSeq: 5 })
      // At least one look while reading the records, and the last one before the delete.
      expect(counting.looks).toBeGreaterThanOrEqual(2)
      for (let at = 1; at <= counting.looks; at++) {
        const s = await seeded()
        await expect(s.prune(T0 + 5, T0 + 100, { signal: firingAt(at) as unknown as AbortSignal })).rejects.toThrow('stopping')
        expect(await s.verify()).toEqual({ ok: true, records: 10, head: expect.objectContaining({ seq: 10 }), firstSeq: 1 })
        expect((await s.query({ limit: 10, type: 'audit.checkpoint' })).records).toEqual([])
        // The next prune does it all.
        expect(await s.prune(T0 + 5, T0 + 101)).toEqual({ pruned: 4, checkpointSeq: 11 })
        await s.close()
      }
    })

    // Retention deletes records for good: it must not delete the evidence that they were tampered with.
    it('retention refuses to prune records the chain does not vouch for, so the tampering stays visible', async () => {
      const s = await fresh()
      for (let i = 1; i <= 6; i++) await s.record(issued(i))
      for (let i = 10; i <= 12; i++) await s.record(issued(i, { time: T0 + 100 + i }))
      await h.tamper.setColumn(3, 'role', 'admin')
      await expect(s.prune(T0 + 100, T0 + 200)).rejects.toThrow('audit chain broken at seq 3: column role differs from the hashed body (record edited); not pruning (run "audit verify")')
      expect(await s.verify()).toMatchObject({ ok: false, broken: { seq: 3, reason: 'column role differs from the hashed body (record edited)' } })
      await h.tamper.setColumn(3, 'role', 'schedd')
      await h.tamper.deleteRecord(1)
      await expect(s.prune(T0 + 100, T0 + 200)).rejects.toThrow('audit chain broken at seq 2: records before seq 2 are missing and no checkpoint vouches for their removal; not pruning (run "audit verify")')
      expect(await s.verify()).toMatchObject({ ok: false, broken: { seq: 2 } })
    })

    it('retention refuses to prune a record that no longer links to the next one it keeps', async () => {
      const s = await fresh()
      for (let i = 1; i <= 4; i++) await s.record(issued(i))
      for (let i = 10; i <= 12; i++) await s.record(issued(i, { time: T0 + 100 + i }))
      const edited = JSON.stringify(sortedIssued(4)).replace('pilot-4@', 'mallory@')
      await h.tamper.setBody(4, edited)
      await expect(s.prune(T0 + 100, T0 + 200)).rejects.toThrow('audit chain broken at seq 4: hash does not match the record content (record edited); not pruning (run "audit verify")')
    })

    it('stores revocations with their audit record; a role revocation bumps the generation', async () => {
      const s = await fresh()
      const ev = (kind: string): AuditEvent => ({ type: 'token.revoked', time: T0, caller: { sub: 'admin' }, reason: `test ${kind}` })
      const a = await s.revoke({ kind: 'jti', value: 'j1', revokedAt: T0, until: T0 + 60, reason: 'lost' }, ev('jti'))
      const b = await s.revoke({ kind: 'role', value: 'pilot', revokedAt: T0, until: T0 + 3600 }, ev('role'))
      const c = await s.revoke({ kind: 'role', value: 'pilot', revokedAt: T0 + 5, until: T0 + 3605, revokedBy: 'ops' }, ev('role'))
      await s.revoke({ kind: 'site', value: 'SITE_A', revokedAt: T0, until: T0 + 10 }, ev('site'))
      expect(a).toMatchObject({ id: expect.any(Number), kind: 'jti', value: 'j1', reason: 'lost' })
      expect(a.gen).toBeUndefined()
      expect([b.gen, c.gen]).toEqual([2, 3])
      expect(await s.roleGenerations()).toEqual(new Map([['pilot', 3]]))
      expect((await s.listRevocations()).map((r) => r.kind)).toEqual(['jti', 'role', 'role', 'site'])
      expect((await s.listRevocations({ activeAt: T0 + 61 })).map((r) => r.id)).toEqual([b.id, c.id])
      const recs = (await s.query({ limit: 10, type: 'token.revoked' })).records
      expect(recs).toHaveLength(4)
      expect(recs.map((r) => r.event.detail)).toContainEqual({ revocation: { id: c.id, kind: 'role', value: 'pilot', revokedAt: T0 + 5, until: T0 + 3605, gen: 3, revokedBy: 'ops' } })
      expect(await s.verify()).toMatchObject({ ok: true, records: 4 })
      expect(await s.verifyRevocations()).toEqual({ ok: true, revocations: 4 })
    })

    describe('the revocations table is checked against the chained records', () => {
      const ev: AuditEvent = { type: 'token.revoked', time: T0, caller: { sub: 'admin' } }
      async function revoked() {
        const s = await fresh()
        await s.record(issued(1))
        const jti = await s.revoke({ kind: 'jti', value: 'jti-1', revokedAt: T0, until: T0 + 60 }, ev)
        const site = await s.revoke({ kind: 'site', value: 'SITE_A', revokedAt: T0 + 1, until: T0 + 3600, reason: 'decommissioned' }, ev)
        const role = await s.revoke({ kind: 'role', value: 'pilot', revokedAt: T0 + 2, until: T0 + 3600 }, ev)
        expect(await s.verifyRevocations()).toEqual({ ok: true, revocations: 3 })
        return { s, jti, site, role }
      }
      const differences = async (s: BrokerStore, options?: Parameters<BrokerStore['verifyRevocations']>[0]) => {
        const v = await s.verifyRevocations(options)
        expect(v.ok).toBe(false)
        return v.ok ? [] : v.differences
      }

      it('an empty store has nothing to differ', async () => {
        expect(await (await fresh()).verifyRevocations()).toEqual({ ok: true, revocations: 0 })
      })

      it('names a deleted row, which would silently un-revoke', async () => {
        const { s, site } = await revoked()
        await h.tamper.deleteRevocation(site.id)
        expect(await s.verify()).toMatchObject({ ok: true })
        expect(await differences(s)).toEqual([`revocation ${site.id} (site "SITE_A"), recorded at seq 3, is missing from the revocations table (deleted)`])
      })

      it('names a row inserted without a record', async () => {
        const { s, role } = await revoked()
        await h.tamper.insertRevocation({ kind: 'sub', value: 'alice', revokedAt: T0, until: T0 + 60 })
        expect(await differences(s)).toEqual([`revocation ${role.id + 1} (sub "alice") has no token.revoked record (inserted outside the broker)`])
      })

      it('names a row whose expiry was edited', async () => {
        const { s, jti } = await revoked()
        await h.tamper.setRevocationUntil(jti.id, T0 - 1)
        expect(await differences(s)).toEqual([`revocation ${jti.id} (jti "jti-1") differs from its record at seq 2: until ${T0 - 1}, recorded ${T0 + 60} (edited)`])
      })

      it('names a lowered, a removed and an invented role generation', async () => {
        const { s } = await revoked()
        await h.tamper.setRoleGeneration('pilot', 1)
        expect(await differences(s)).toEqual(['role pilot is at generation 1 but its recorded revocations raised it to 2'])
        await h.tamper.setRoleGeneration('pilot', null)
        expect(await differences(s)).toEqual(['role pilot is at generation none but its recorded revocations raised it to 2'])
        await h.tamper.setRoleGeneration('pilot', 2)
        await h.tamper.setRoleGeneration('schedd', 5)
        expect(await differences(s)).toEqual(['role schedd is at generation 5 with no recorded role revocation'])
      })

      it('keeps vouching for revocations whose records retention pruned, through a second prune', async () => {
        const { s, jti, site, role } = await revoked()
        for (let i = 10; i <= 12; i++) await s.record(issued(i, { time: T0 + 100 + i }))
        expect(await s.prune(T0 + 100, T0 + 200)).toEqual({ pruned: 4, checkpointSeq: 8 })
        const cp = (await s.query({ limit: 1, type: 'audit.checkpoint' })).records[0]!
        expect((cp.event.detail!.revocations as Array<{ id: number }>).map((r) => r.id)).toEqual([jti.id, site.id, role.id])
        expect(await s.verify()).toMatchObject({ ok: true, firstSeq: 5 })
        expect(await s.verifyRevocations()).toEqual({ ok: true, revocations: 3 })
        await s.record(issued(20, { time: T0 + 300 }))
        // The first checkpoint itself is pruned now: the second must carry what it carried.
        expect(await s.prune(T0 + 300, T0 + 301)).toEqual({ pruned: 4, checkpointSeq: 10 })
        expect(await s.verify()).toMatchObject({ ok: true, firstSeq: 9 })
        expect(await s.verifyRevocations()).toEqual({ ok: true, revocations: 3 })
        await h.tamper.deleteRevocation(site.id)
        expect(await differences(s)).toEqual([`revocation ${site.id} (site "SITE_A"), recorded at seq 10, is missing from the revocations table (deleted)`])
      })

      it('carries a pilot-enrolment revocation and its lift through a prune, and names its row deleted after it', async () => {
        const s = await fresh()
        await s.record(issued(1))
        const E = '0123456789abcdef0123456789abcdef'
        const group = await s.revoke({ kind: 'pilot-enrolment', value: E, revokedAt: T0, until: T0 + 3600, reason: 'teardown' }, ev)
        const other = await s.revoke({ kind: 'pilot-enrolment', value: 'fedcba9876543210fedcba9876543210', revokedAt: T0 + 1, until: T0 + 3600 }, ev)
        await s.lift({ id: other.id, liftedAt: T0 + 2, liftedBy: 'admin' }, { type: 'token.unrevoked', time: T0 + 2, caller: { sub: 'admin' }, detail: { pilotEnrolment: other.value, lift: { id: other.id, liftedAt: T0 + 2, liftedBy: 'admin' } } })
        for (let i = 10; i <= 12; i++) await s.record(issued(i, { time: T0 + 100 + i }))
        await s.prune(T0 + 100, T0 + 200)
        const cp = (await s.query({ limit: 1, type: 'audit.checkpoint' })).records[0]!
        expect(cp.event.detail!.revocations).toMatchObject([{ id: group.id, kind: 'pilot-enrolment', value: E }, { id: other.id, kind: 'pilot-enrolment', liftedAt: T0 + 2 }])
        expect(await s.verifyRevocations()).toEqual({ ok: true, revocations: 2 })
        await h.tamper.deleteRevocation(group.id)
        expect(await differences(s)).toEqual([`revocation ${group.id} (pilot-enrolment "${E}"), recorded at seq ${cp.seq}, is missing from the revocations table (deleted)`])
      })

      // The records must be authenticated, not just selected by their (unhashed) type column.
      const unverified = async (s: BrokerStore, options?: Parameters<BrokerStore['verifyRevocations']>[0]) => {
        const v = await s.verifyRevocations(options)
        expect(v.ok).toBe(false)
        return v.ok ? undefined : v.unverified
      }
      const bodyOf = async (s: BrokerStore, seq: number) => {
        for await (const r of s.scan(seq)) return JSON.stringify(r.event)
        throw new Error(`no record ${seq}`)
      }

      it('is not fooled by deleting a row and retyping its record', async () => {
        const { s, site } = await revoked()
        await h.tamper.deleteRevocation(site.id)
        await h.tamper.setColumn(3, 'type', 'token.denied')
        expect(await unverified(s)).toBe('audit chain broken at seq 3: column type differs from the hashed body (record edited)')
      })

      it('is not fooled by deleting a row and its record', async () => {
        const { s, site } = await revoked()
        await h.tamper.deleteRevocation(site.id)
        await h.tamper.deleteRecord(3)
        expect(await unverified(s)).toBe('audit chain broken at seq 3: record missing (next present record is seq 4)')
      })

      it('is not fooled by editing a row and its record to match', async () => {
        const { s, site } = await revoked()
        await h.tamper.setRevocationUntil(site.id, T0 + 10)
        await h.tamper.setBody(3, (await bodyOf(s, 3)).replace(`"until":${site.until}`, `"until":${T0 + 10}`))
        expect(await unverified(s)).toBe('audit chain broken at seq 3: hash does not match the record content (record edited)')
      })

      it('is not fooled by retention pruning a retyped revocation record whose row was deleted', async () => {
        const { s, site } = await revoked()
        for (let i = 10; i <= 12; i++) await s.record(issued(i, { time: T0 + 100 + i }))
        await h.tamper.deleteRevocation(site.id)
        await h.tamper.setColumn(3, 'type', 'token.denied')
        // Pruned, the record's body would be gone and the checkpoint would not carry the revocation.
        await expect(s.prune(T0 + 100, T0 + 200)).rejects.toThrow('audit chain broken at seq 3: column type differs from the hashed body (record edited); not pruning (run "audit verify")')
        expect(await unverified(s)).toBe('audit chain broken at seq 3: column type differs from the hashed body (record edited)')
      })

      it('resumes from its sealed anchor, re-checking only the revocation records below it', async () => {
        const { s, site } = await revoked()
        const anchorKey = Buffer.alloc(32, 7)
        expect(await s.verifyRevocations({ anchorKey })).toEqual({ ok: true, revocations: 3 })
        await s.record(issued(5))
        // An edit below the anchor to a record that states no revocation is left to audit verify: the
        // anchored check does not hash it again (that is what makes it cheap), the full check does.
        await h.tamper.setBody(1, (await bodyOf(s, 1)).replace('jti-1', 'jti-x'))
        expect(await s.verifyRevocations({ anchorKey })).toEqual({ ok: true, revocations: 3 })
        expect((await s.verifyAll()).chain).toMatchObject({ ok: false, broken: { seq: 1 } })
        // A key that did not seal the anchor makes it worthless: everything is checked again.
        expect(await unverified(s, { anchorKey: Buffer.alloc(32, 8) })).toBe('audit chain broken at seq 1: hash does not match the record content (record edited)')
        // The revocation records below the anchor are read by seq, so retyping one does not hide it.
        await h.tamper.deleteRevocation(site.id)
        await h.tamper.setColumn(3, 'type', 'token.denied')
        expect(await unverified(s, { anchorKey })).toBe('audit chain broken at seq 3, a record that stated revocations when last verified: column type differs from the hashed body (record edited)')
      })

      // The start-up check from an anchor: a revocation record below it is read again by seq, and one edited into
      // text that is not JSON is named as a chain fault; so is one after the anchor, which is hashed afresh.
      it('an anchored start names a revocation record edited into something that is not JSON', async () => {
        const { s } = await revoked()
        const anchorKey = Buffer.alloc(32, 7)
        expect(await s.verifyRevocations({ anchorKey })).toEqual({ ok: true, revocations: 3 })
        await s.record(issued(5))
        await h.tamper.setBody(5, 'not json')
        expect(await unverified(s, { anchorKey })).toBe('audit chain broken at seq 5: body is not valid JSON')
        await h.tamper.setBody(3, '{"detail":{"revocation":')
        expect(await unverified(s, { anchorKey })).toBe('audit chain broken at seq 3, a record that stated revocations when last verified: body is not valid JSON')
      })

      it('refuses a log that ends before the seq an earlier check verified it to (newest records cut off)', async () => {
        const { s, role } = await revoked()
        const anchorKey = Buffer.alloc(32, 7)
        expect(await s.verifyRevocations({ anchorKey })).toEqual({ ok: true, revocations: 3 })
        // The newest record, a role revocation, goes with its row and generation; the head moves back.
        await h.tamper.truncateTo(3)
        await h.tamper.deleteRevocation(role.id)
        await h.tamper.setRoleGeneration('pilot', null)
        // Nothing inside the chain shows it (docs/audit.md), but the sealed anchor remembers seq 4.
        expect(await s.verifyAll()).toEqual({ chain: expect.objectContaining({ ok: true }), revocations: { ok: true, revocations: 2 } })
        const why = 'the audit log ends at seq 3, but an earlier check verified it up to seq 4 (records cut off the end, or an older copy of the database restored: if on purpose, delete both anchors as docs/audit.md says)'
        expect(await unverified(s, { anchorKey })).toBe(why)
        // Refusing, it seals no anchor for the shorter log: the next start refuses too.
        expect(await unverified(s, { anchorKey })).toBe(why)
      })

      /** The anchor's copy outside the database, as a file on the broker's host would hold it. */
      const outside = () => {
        let sealed: string | undefined
        return { read: async () => sealed, write: async (s: string) => { sealed = s } }
      }

      it('a copy of the anchor outside the database still catches the cut once the database\'s own is deleted', async () => {
        const { s, role } = await revoked()
        const anchorKey = Buffer.alloc(32, 7)
        const anchorCopy = outside()
        expect(await s.verifyRevocations({ anchorKey, anchorCopy })).toEqual({ ok: true, revocations: 3 })
        await h.tamper.truncateTo(3)
        await h.tamper.deleteRevocation(role.id)
        await h.tamper.setRoleGeneration('pilot', null)
        await h.tamper.deleteAnchor()
        expect(await unverified(s, { anchorKey, anchorCopy })).toBe('the audit log ends at seq 3, but an earlier check verified it up to seq 4 (records cut off the end, or an older copy of the database restored: if on purpose, delete both anchors as docs/audit.md says)')
        // Without the copy, nothing is left to tell: the shorter chain verifies (docs/audit.md).
        expect(await s.verifyRevocations({ anchorKey })).toEqual({ ok: true, revocations: 2 })
      })

      it('a copy of the anchor outside the database catches a chain rewritten below it', async () => {
        const { s } = await revoked()
        const anchorKey = Buffer.alloc(32, 7)
        const anchorCopy = outside()
        expect(await s.verifyRevocations({ anchorKey, anchorCopy })).toEqual({ ok: true, revocations: 3 })
        // Another chain of the same length, whole in itself: a rewrite with every hash recomputed, or another database.
        const other = await fresh()
        for (let i = 1; i <= 5; i++) await other.record(issued(i))
        expect(await unverified(other, { anchorKey, anchorCopy })).toBe('record seq 4 is not the record an earlier check verified (its hash changed: records rewritten with their hashes recomputed, or another database)')
      })

      // The horizon sizes every later revocation's until: lowered, a revocation would leave the HTCondor
      // expression while tokens issued under a longer maximum are still valid, with a chain that agrees.
      it('names a token issuance horizon lowered since the last check, and keeps naming it', async () => {
        const { s } = await revoked()
        await s.record(issued(7, { exp: T0 + 365 * 86400 }))
        const anchorKey = Buffer.alloc(32, 7)
        expect(await s.verifyRevocations({ anchorKey })).toEqual({ ok: true, revocations: 3 })
        await h.tamper.setTokenHorizonExp(T0 + 60)
        const lowered = `the token issuance horizon ends at ${T0 + 60} in the table, but it reached ${T0 + 365 * 86400} when last checked (lowered by hand: later revocations would end too early)`
        expect(await differences(s, { anchorKey })).toEqual([lowered])
        expect(await differences(s, { anchorKey })).toEqual([lowered])
      })

      // With retention on, every check after a prune hashed the whole log again (the first seq changed).
      it('resumes from its anchor after a prune the chain vouches for, and not after a prefix deleted by hand', async () => {
        const { s, site } = await revoked()
        for (let i = 10; i <= 13; i++) await s.record(issued(i, { time: T0 + 100 + i }))
        const anchorKey = Buffer.alloc(32, 7)
        expect(await s.verifyRevocations({ anchorKey })).toEqual({ ok: true, revocations: 3 })
        expect(await s.prune(T0 + 100, T0 + 200)).toEqual({ pruned: 4, checkpointSeq: 9 })
        // Resumed, not checked in full: an edit below the anchor to a record stating no revocation is left
        // to audit verify, as without a prune.
        await h.tamper.setBody(6, (await bodyOf(s, 6)).replace('jti-11', 'jti-x'))
        expect(await s.verifyRevocations({ anchorKey })).toEqual({ ok: true, revocations: 3 })
        expect((await s.verifyAll()).chain).toMatchObject({ ok: false, broken: { seq: 6 } })
        // The revocations the pruned records stated come from the checkpoint: a row deleted is still named.
        await h.tamper.deleteRevocation(site.id)
        expect(await differences(s, { anchorKey })).toEqual([`revocation ${site.id} (site "SITE_A"), recorded at seq 9, is missing from the revocations table (deleted)`])
        // Records deleted from the start beyond what the checkpoint vouches for are not taken for a prune.
        await h.tamper.deleteRecord(5)
        expect(await unverified(s, { anchorKey })).toBe('audit chain broken at seq 6: records before seq 6 are missing and no checkpoint vouches for their removal')
      })

      // The anchored check resumes while the log starts at most one past the anchor's seq (docs/audit.md):
      // one past is a prune through the anchor's own record. The first record left must then link to the
      // sealed anchor's hash, and the checkpoint of that prune must still be among the records read.
      it('resumes from its anchor after a prune through the anchor\'s own record, and not after the same records deleted by hand', async () => {
        const anchorKey = Buffer.alloc(32, 7)
        {
          const { s, site } = await revoked()
          // Anchored at seq 4, the role revocation: the last record of revoked().
          expect(await s.verifyRevocations({ anchorKey })).toEqual({ ok: true, revocations: 3 })
          for (let i = 10; i <= 13; i++) await s.record(issued(i, { time: T0 + 100 + i }))
          // Seqs 1-4 go, the anchor's own with them: the log starts at 5, one past the anchor.
          expect(await s.prune(T0 + 100, T0 + 200)).toEqual({ pruned: 4, checkpointSeq: 9 })
          expect(await s.verifyRevocations({ anchorKey })).toEqual({ ok: true, revocations: 3 })
          await h.tamper.deleteRevocation(site.id)
          expect(await differences(s, { anchorKey })).toEqual([`revocation ${site.id} (site "SITE_A"), recorded at seq 9, is missing from the revocations table (deleted)`])
        }
        {
          const { s } = await revoked()
          expect(await s.verifyRevocations({ anchorKey })).toEqual({ ok: true, revocations: 3 })
          for (let i = 10; i <= 13; i++) await s.record(issued(i, { time: T0 + 100 + i }))
          for (let seq = 1; seq <= 4; seq++) await h.tamper.deleteRecord(seq)
          expect(await unverified(s, { anchorKey })).toBe('audit chain broken at seq 5: records before seq 5 are missing and no checkpoint vouches for their removal')
        }
      })

      it('resumes from its anchor and catches a revocation record rewritten into another type below it', async () => {
        const { s, site } = await revoked()
        const anchorKey = Buffer.alloc(32, 7)
        expect(await s.verifyRevocations({ anchorKey })).toEqual({ ok: true, revocations: 3 })
        await h.tamper.deleteRevocation(site.id)
        const body = (await bodyOf(s, 3)).replace('"type":"token.revoked"', '"type":"token.denied"')
        await h.tamper.setBody(3, body)
        await h.tamper.setColumn(3, 'type', 'token.denied')
        expect(await unverified(s, { anchorKey })).toBe('audit chain broken at seq 3, a record that stated revocations when last verified: hash does not match the record content (record edited)')
      })

      it('lifts an entry with its token.unrevoked record; the chain accounts for it, through prunes', async () => {
        const s = await fresh()
        await s.record(issued(1))
        const site = await s.revoke({ kind: 'site', value: 'SITE_A', revokedAt: T0 + 2, until: T0 + 3600 }, { ...ev, time: T0 + 2 })
        const unrevoked = (id: number): AuditEvent => ({ type: 'token.unrevoked', time: T0 + 50, caller: { sub: 'admin' }, site: 'SITE_A', detail: { lift: { id, liftedAt: T0 + 50, liftedBy: 'admin' } } })
        expect(await s.lift({ id: site.id, liftedAt: T0 + 50, liftedBy: 'admin' }, unrevoked(site.id))).toEqual({ ...site, liftedAt: T0 + 50, liftedBy: 'admin' })
        // Unknown or already lifted: nothing written.
        expect(await s.lift({ id: site.id, liftedAt: T0 + 51 }, unrevoked(site.id))).toBeUndefined()
        expect(await s.lift({ id: 999, liftedAt: T0 + 51 }, unrevoked(999))).toBeUndefined()
        expect((await s.verify())).toMatchObject({ ok: true, records: 3 })
        expect(await s.listRevocations({ activeAt: T0 + 60 })).toEqual([])
        expect(await s.listRevocations()).toEqual([{ ...site, liftedAt: T0 + 50, liftedBy: 'admin' }])
        expect(await s.verifyRevocations()).toEqual({ ok: true, revocations: 1 })
        await s.record(issued(100))
        // The revocation record goes (seq 2); the lift (seq 3) stays.
        expect(await s.prune(T0 + 10, T0 + 55)).toEqual({ pruned: 2, checkpointSeq: 5 })
        expect(await s.verifyRevocations()).toEqual({ ok: true, revocations: 1 })
        // The lift goes; the checkpoint stating the revocation stays: the new one carries the lift alone.
        expect(await s.prune(T0 + 60, T0 + 200)).toEqual({ pruned: 1, checkpointSeq: 6 })
        const cp = (await s.query({ limit: 1, type: 'audit.checkpoint' })).records[0]!
        expect(cp.event.detail).toMatchObject({ revocations: [], lifts: [{ id: site.id, liftedAt: T0 + 50, liftedBy: 'admin' }] })
        expect(await s.verify()).toMatchObject({ ok: true })
        expect(await s.verifyRevocations()).toEqual({ ok: true, revocations: 1 })
        // A row deleted without a lift record is still caught.
        await h.tamper.deleteRevocation(site.id)
        expect(await differences(s)).toEqual([`revocation ${site.id} (site "SITE_A"), recorded at seq 5, is missing from the revocations table (deleted)`])
      })

      it('does not mistake revocations committing during the check for differences', async () => {
        const s = await fresh()
        const writes = Promise.all(Array.from({ length: 40 }, (_, i) => s.revoke({ kind: i % 2 ? 'role' : 'sub', value: `v${i % 4}`, revokedAt: T0, until: T0 + 60 }, ev)))
        const checks = []
        for (let i = 0; i < 10; i++) { checks.push(await s.verifyRevocations()); await new Promise((r) => setImmediate(r)) }
        await writes
        for (const c of checks) expect(c.ok).toBe(true)
        expect(await s.verifyRevocations()).toEqual({ ok: true, revocations: 40 })
      })
    })

    if (h.breakWrites) {
      const breakWrites = h.breakWrites
      it('fails every record of a batch that cannot commit and leaves the chain intact', async () => {
        const s = await fresh()
        await s.record(issued(1))
        await breakWrites()
        const results = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => s.record(issued(i + 2))))
        expect(results.every((r) => r.status === 'rejected')).toBe(true)
        await expect(s.revoke({ kind: 'jti', value: 'x', revokedAt: T0, until: T0 }, { type: 'token.revoked', time: T0 })).rejects.toThrow()
        expect(await s.listRevocations()).toEqual([])
        expect(await s.verify()).toMatchObject({ ok: true, records: 1 })
      })
    }

    if (h.openPeer) {
      const openPeer = h.openPeer
      it('keeps one chain when two replicas write concurrently, and survives reopening', async () => {
        const a = await fresh()
        const b = await openPeer()
        open.push(b)
        await Promise.all([
          ...Array.from({ length: 300 }, (_, i) => a.record(issued(i + 1, { requestId: 'a' }))),
          ...Array.from({ length: 300 }, (_, i) => b.record(issued(i + 1, { requestId: 'b' }))),
        ])
        expect(await a.verify()).toMatchObject({ ok: true, records: 600 })
        await b.close()
        const c = await openPeer()
        open.push(c)
        await c.record(issued(999))
        expect(await c.verify()).toMatchObject({ ok: true, records: 601 })
        expect((await c.query({ limit: 1000, jti: 'jti-999' })).records[0]!.seq).toBe(601)
      })

      // Replicas started together prune together: both check the same range, one deletes it first.
      it('two replicas pruning at once: one prunes, the other finds nothing left to do', async () => {
        const a = await fresh()
        const b = await openPeer()
        open.push(b)
        for (let i = 1; i <= 6; i++) await a.record(issued(i))
        for (let i = 10; i <= 12; i++) await a.record(issued(i, { time: T0 + 100 + i }))
        const results = await Promise.all([a.prune(T0 + 100, T0 + 200), b.prune(T0 + 100, T0 + 200)])
        expect(results).toContainEqual({ pruned: 0 })
        expect(results).toContainEqual({ pruned: 6, checkpointSeq: 10 })
        expect(await a.verify()).toMatchObject({ ok: true, records: 4, firstSeq: 7 })
      })
    }
  })
}

function sortedIssued(i: number): unknown {
  const sort = (v: unknown): unknown => Array.isArray(v) ? v.map(sort)
    : v && typeof v === 'object' ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sort((v as Record<string, unknown>)[k])])) : v
  return sort(issued(i))
}
