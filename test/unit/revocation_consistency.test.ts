import { describe, expect, it } from 'vitest'
import type { AuditEvent, AuditRecord } from '../../src/audit/audit_log.ts'
import { assertRevocationsMatchAudit, revocationDifferences, revocationOfEvent } from '../../src/revocation/revocation_consistency.ts'
import { MemoryStore } from '../../src/storage/memory_store.ts'
import { RevocationService } from '../../src/revocation/revocation_service.ts'
import { fixedClock } from '../../src/lib/clock.ts'
import { silentLogger } from '../../src/lib/logger.ts'

const T = 1_800_000_000
const rec = (seq: number, event: AuditEvent): AuditRecord => ({ seq, event, prevHash: '', hash: '' })

describe('revocation consistency', () => {
  it('reads a record written before the full row was stored from the fields the service set alongside', () => {
    // The shape older brokers wrote: detail.revocation without revokedAt, reason or revokedBy.
    const legacy: AuditEvent = {
      type: 'token.revoked', time: T, caller: { sub: 'cli:root' }, site: 'SITE_A', reason: 'compromised',
      detail: { revocation: { id: 4, kind: 'site', value: 'SITE_A', until: T + 60 } },
    }
    expect(revocationOfEvent(legacy)).toEqual({ id: 4, kind: 'site', value: 'SITE_A', revokedAt: T, until: T + 60, reason: 'compromised', revokedBy: 'cli:root' })
  })

  it('takes a current record at its word, not the surrounding event', () => {
    const e: AuditEvent = {
      type: 'token.revoked', time: T + 9, caller: { sub: 'someone-else' },
      detail: { revocation: { id: 1, kind: 'role', value: 'pilot', revokedAt: T, until: T + 60, gen: 2 } },
    }
    expect(revocationOfEvent(e)).toEqual({ id: 1, kind: 'role', value: 'pilot', revokedAt: T, until: T + 60, gen: 2 })
    expect(revocationOfEvent({ ...e, type: 'token.issued' })).toBeUndefined()
  })

  it('names one id recorded twice with different content', () => {
    const r = (seq: number, until: number) => rec(seq, { type: 'token.revoked', time: T, detail: { revocation: { id: 1, kind: 'jti', value: 'j', revokedAt: T, until } } })
    expect(revocationDifferences({ records: [r(1, T + 1), r(2, T + 2)], rows: [{ id: 1, kind: 'jti', value: 'j', revokedAt: T, until: T + 1 }], generations: new Map() }))
      .toEqual(['revocation 1 is recorded differently at seq 1 and seq 2'])
  })

  // The query a broker enforces from must answer exactly the rows the whole table shows in force: an index or
  // view that answers it otherwise passes a check of the table alone while a fresh process enforces less.
  it('holds the read of the active entries against the rows in force, both ways', () => {
    const stated = (id: number, value: string, until: number) => rec(id, { type: 'token.revoked', time: T, detail: { revocation: { id, kind: 'jti', value, revokedAt: T, until } } })
    const rows = [
      { id: 1, kind: 'jti' as const, value: 'a', revokedAt: T, until: T + 60 },
      { id: 2, kind: 'jti' as const, value: 'b', revokedAt: T, until: T + 60 },
      { id: 3, kind: 'jti' as const, value: 'expired', revokedAt: T, until: T + 5 },
    ]
    const records = rows.map((r) => stated(r.id, r.value, r.until))
    const at = T + 10
    expect(revocationDifferences({ records, rows, active: { at, rows: rows.slice(0, 2) }, generations: new Map() })).toEqual([])
    expect(revocationDifferences({ records, rows, active: { at, rows: [rows[1]!, rows[2]!, { ...rows[0]!, id: 9 }] }, generations: new Map() })).toEqual([
      'revocation 1 (jti "a") is in force in the revocations table but the read of the active revocations leaves it out (an index or view disagreeing with the table: a broker starting now would not enforce it)',
      'the read of the active revocations returns revocation 3 (jti "expired"), which the revocations table does not show in force (an index or view disagreeing with the table)',
      'the read of the active revocations returns revocation 9 (jti "a"), which the revocations table does not show in force (an index or view disagreeing with the table)',
    ])
    expect(revocationDifferences({ records, rows, active: { at, rows: [rows[0]!, { ...rows[1]!, value: 'c', until: T + 30 }] }, generations: new Map() })).toEqual([
      'revocation 2 (jti "b") is read differently by the read of the active revocations, in value, until (an index or view disagreeing with the table)',
    ])
  })

  // The broker has written detail.revocation (id, kind, value, until) on every token.revoked record since the
  // first store, and detail.lift (id, liftedAt) on every token.unrevoked one: a record without them is one it
  // did not write (an insider's append) or a corrupted one, and must not be skipped as if it said nothing.
  const none = { records: [] as AuditRecord[], rows: [], generations: new Map<string, number>() }
  it.each([
    ['no detail', {}],
    ['an id that is not a number', { revocation: { id: '1', kind: 'site', value: 'cloud-a', until: T + 60 } }],
    ['an unknown kind', { revocation: { id: 1, kind: 'everything', value: 'cloud-a', until: T + 60 } }],
    ['no until', { revocation: { id: 1, kind: 'site', value: 'cloud-a' } }],
  ])('names a token.revoked record with %s', (_what, detail) => {
    const r = rec(7, { type: 'token.revoked', time: T, caller: { sub: 'cli:root' }, detail })
    expect(revocationDifferences({ ...none, records: [r] })).toEqual(['the token.revoked record at seq 7 states no well-formed revocation (not written by the broker, or corrupted)'])
  })

  it.each([
    ['no detail', {}],
    ['no liftedAt', { lift: { id: 1 } }],
    ['an id that is not a number', { lift: { id: null, liftedAt: T } }],
  ])('names a token.unrevoked record with %s', (_what, detail) => {
    const r = rec(9, { type: 'token.unrevoked', time: T, caller: { sub: 'cli:root' }, detail })
    expect(revocationDifferences({ ...none, records: [r] })).toEqual(['the token.unrevoked record at seq 9 states no well-formed lift (not written by the broker, or corrupted)'])
  })

  it('a malformed token.revoked record appended to an intact chain stops the start-up check, naming its seq', async () => {
    const store = new MemoryStore()
    await store.record({ type: 'token.issued', time: T, jti: 'j1' })
    await store.record({ type: 'token.revoked', time: T + 1, caller: { sub: 'cli:root' }, site: 'cloud-a', detail: { revocation: { id: 1, kind: 'site', value: 'cloud-a' } } })
    expect(await store.verify()).toMatchObject({ ok: true })
    await expect(assertRevocationsMatchAudit(store)).rejects.toThrow('revocations differ from the audit chain: the token.revoked record at seq 2 states no well-formed revocation (not written by the broker, or corrupted); run "audit verify" and restore the revocations table from a backup')
  })

  it('retention refuses to prune a malformed revocation record, so the next prune cannot erase it', async () => {
    const store = new MemoryStore()
    await store.record({ type: 'token.unrevoked', time: T, caller: { sub: 'cli:root' }, detail: { lift: { id: 3 } } })
    await store.record({ type: 'token.issued', time: T + 100, jti: 'j1' })
    await expect(store.prune(T + 50, T + 200)).rejects.toThrow('the token.unrevoked record at seq 1 states no well-formed lift (not written by the broker, or corrupted); not pruning (run "audit verify")')
    expect(store.rawRows().map((r) => r.seq)).toEqual([1, 2])
  })
})

describe('a checkpoint written by hand', () => {
  // The broker writes a checkpoint's `revocations` as an array of whole rows and `lifts` (when any) as an array of
  // {id, liftedAt, liftedBy?}, each field of the type the table gives it. A list that is not an array, or an
  // entry with a field of another type, is not the broker's: read as nothing, it let `audit verify` pass and
  // retention erase the record, leaving the next checkpoint with nothing of it.
  const cp = (detail: Record<string, unknown>): AuditEvent => ({ type: 'audit.checkpoint', time: T, caller: { sub: 'retention' }, detail })
  const whole = { id: 1, kind: 'site', value: 'cloud-a', revokedAt: T, until: T + 60 }
  const cases: Array<[string, Record<string, unknown>]> = [
    ['revocations that are not a list', { revocations: whole }],
    ['lifts that are not a list', { revocations: [], lifts: { id: 1, liftedAt: T } }],
    ['a revocation lifted at a time that is not a number', { revocations: [{ ...whole, liftedAt: 'yesterday' }] }],
    ['a revocation whose generation is not a number', { revocations: [{ ...whole, kind: 'role', gen: '2' }] }],
    ['a lift whose author is not a string', { revocations: [], lifts: [{ id: 1, liftedAt: T, liftedBy: 7 }] }],
  ]

  it.each(cases)('with %s is named as a difference', (_what, detail) => {
    expect(revocationDifferences({ records: [rec(4, cp(detail))], rows: [], generations: new Map() }))
      .toContain('the record at seq 4 states 1 revocation or lift that is not well-formed')
  })

  it.each(cases)('with %s is not pruned', async (_what, detail) => {
    const store = new MemoryStore()
    await store.record(cp(detail))
    await store.record({ type: 'token.issued', time: T + 100, jti: 'j1' })
    await expect(store.prune(T + 50, T + 200)).rejects.toThrow('the record at seq 1 states 1 revocation or lift that is not well-formed; not pruning (run "audit verify")')
    expect(store.rawRows().map((r) => r.seq)).toEqual([1, 2])
  })

  it('as the broker writes it (lists of whole rows and lifts) is pruned', async () => {
    const store = new MemoryStore()
    await store.record(cp({ revocations: [{ ...whole, kind: 'role', gen: 2, iss: 'https://iam.example.org/', reason: 'r', revokedBy: 'cli:root', liftedAt: T + 5, liftedBy: 'cli:root' }], lifts: [{ id: 3, liftedAt: T + 6, liftedBy: 'bootstrap' }] }))
    await store.record({ type: 'token.issued', time: T + 100, jti: 'j1' })
    expect(await store.prune(T + 50, T + 200)).toEqual({ pruned: 1, checkpointSeq: 3 })
  })
})

// Since 06b43ad a lift record states the kind and value of the entry it lifted, and audit list prints them as
// what was lifted; the check read only the id. A lift naming one entry by id and another by kind and value (a
// record appended or edited where no MAC key guards the chain) passed audit verify while audit list showed the
// wrong entry lifted. A lift from before those fields (id only) states nothing more to compare.
describe('a lift record\'s kind and value', () => {
  const revoked = rec(1, { type: 'token.revoked', time: T, detail: { revocation: { id: 1, kind: 'client', value: 'factory-x', revokedAt: T, until: T + 600 } } })
  const row = { id: 1, kind: 'client' as const, value: 'factory-x', revokedAt: T, until: T + 600, liftedAt: T + 5, liftedBy: 'cli:op' }
  const lift = (extra: Record<string, unknown>) => rec(2, { type: 'token.unrevoked', time: T + 5, caller: { sub: 'cli:op' }, detail: { lift: { id: 1, liftedAt: T + 5, liftedBy: 'cli:op', ...extra } } })

  it('must be those of the revocation its id names', () => {
    expect(revocationDifferences({ records: [revoked, lift({ kind: 'client', value: 'factory-x' })], rows: [row], generations: new Map() })).toEqual([])
    expect(revocationDifferences({ records: [revoked, lift({})], rows: [row], generations: new Map() })).toEqual([])
    expect(revocationDifferences({ records: [revoked, lift({ kind: 'sub', value: 'alice' })], rows: [row], generations: new Map() })).toEqual([
      'the lift at seq 2 names revocation 1 as sub "alice", but its record at seq 1 states client "factory-x" (edited)',
    ])
    expect(revocationDifferences({ records: [revoked, lift({ kind: 'client', value: 'factory-y' })], rows: [row], generations: new Map() })).toEqual([
      'the lift at seq 2 names revocation 1 as client "factory-y", but its record at seq 1 states client "factory-x" (edited)',
    ])
  })
})

describe('lifts the service writes', () => {
  it('pass the check, an issuer-bound entry\'s included', async () => {
    const store = new MemoryStore()
    const service = new RevocationService({
      store, clock: fixedClock(T), log: silentLogger, maxTokenLifetime: 86400, refreshSeconds: 60,
      knownLabels: () => ({ roles: new Set(['pilot']), sites: new Set(['hpc-b']) }), knownIssuers: () => new Set(['https://iam.example.org/']),
    })
    const actor = { principal: 'cli:op' }
    const bound = await service.revoke({ kind: 'sub', value: 'alice', iss: 'https://iam.example.org/' }, actor)
    const client = await service.revoke({ kind: 'client', value: 'factory x' }, actor)
    await service.lift(bound.id, {}, actor)
    await service.lift(client.id, { reason: 'false alarm' }, actor)
    expect(await store.verifyRevocations()).toEqual({ ok: true, revocations: 2 })
  })
})
