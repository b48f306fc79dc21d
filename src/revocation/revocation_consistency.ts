import type { AuditEvent, AuditRecord } from '../audit/audit_log.ts'
import type { AnchorCopy } from '../audit/anchor.ts'
import { OperatorError } from '../errors.ts'
import { REVOCATION_KINDS, type Revocation, type RevocationLift } from './revocation.ts'

/**
 * The revocations table is a working copy: each row is written in the same transaction as the
 * `token.revoked` record that carries it in full, so the hash chain is the authority. This module re-derives
 * the set from the chained records and names every way the table (and the role generations) departs from it:
 * a deleted row silently un-revokes, an inserted or edited one revokes without a record.
 */

/** What the check compares: authenticated records against the table, read in one snapshot. */
export interface RevocationEvidence {
  /**
   * The records whose hashed body states revocations (`token.revoked`, `audit.checkpoint`), in seq order,
   * each checked against its hash and its place in the chain (ChainedStore.verifyRevocations): never
   * selected by the indexed `type` column alone, which is a copy outside the hash.
   */
  records: AuditRecord[]
  rows: Revocation[]
  /**
   * What the query the broker enforces from answered at `at`, read with `rows`: it must be exactly the rows
   * in force then (absent: not compared). The chain vouches for `rows`; a broker starting afresh, or
   * `revoke condor`, enforces this answer, so a difference is a revocation checked but not enforced.
   */
  active?: { at: number; rows: Revocation[] }
  generations: Map<string, number>
}

export type RevocationVerification =
  | { ok: true; revocations: number }
  /**
   * `unverified`: the chain the evidence comes from is broken (why, and where), so it cannot vouch for the
   * table even where no difference shows; `differences` then compares with the records as found.
   */
  | { ok: false; revocations: number; differences: string[]; unverified?: string }

/** A revocation as its record states it, keyed by id, with the seq of the record that states it. */
type Chained = Map<number, { rev: Revocation; seq: number }>

/**
 * The revocation a `token.revoked` event carries. Records written before the full row was stored in
 * `detail.revocation` hold only id, kind, value, until and gen; the rest is what the service always set
 * from the same request (revokedAt = time, reason, revokedBy = caller.sub).
 */
export function revocationOfEvent(e: AuditEvent): Revocation | undefined {
  if (e.type !== 'token.revoked') return undefined
  const r = e.detail?.revocation as Record<string, unknown> | undefined
  if (!r || typeof r.id !== 'number' || !REVOCATION_KINDS.includes(r.kind as Revocation['kind']) || typeof r.value !== 'string' || typeof r.until !== 'number') return undefined
  const full = typeof r.revokedAt === 'number'
  const reason = full ? r.reason : e.reason
  const revokedBy = full ? r.revokedBy : e.caller?.sub
  return {
    id: r.id, kind: r.kind as Revocation['kind'], value: r.value, revokedAt: full ? r.revokedAt as number : e.time, until: r.until,
    ...(typeof r.gen === 'number' ? { gen: r.gen } : {}),
    ...(typeof r.iss === 'string' ? { iss: r.iss } : {}),
    ...(typeof reason === 'string' ? { reason } : {}),
    ...(typeof revokedBy === 'string' ? { revokedBy } : {}),
  }
}

/** The lift a `token.unrevoked` event carries (`detail.lift`). */
export function liftOfEvent(e: AuditEvent): RevocationLift | undefined {
  if (e.type !== 'token.unrevoked') return undefined
  const l = e.detail?.lift as Record<string, unknown> | undefined
  if (!l || typeof l.id !== 'number' || typeof l.liftedAt !== 'number') return undefined
  return { id: l.id, liftedAt: l.liftedAt, ...(typeof l.liftedBy === 'string' ? { liftedBy: l.liftedBy } : {}) }
}

/** What an `audit.checkpoint` carries for the records it replaces. */
export interface CarriedRevocations {
  /** Every revocation the removed records stated, with its lift applied when that was removed too. */
  revocations: Revocation[]
  /** Lifts among the removed records of revocations stated by records that remain. */
  lifts: RevocationLift[]
}

/**
 * What an `audit.checkpoint` must carry when retention removes `events`: every revocation and lift their
 * records (or an earlier checkpoint among them) stated, so the chain still vouches for every row.
 */
export function revocationsToCarry(events: readonly AuditEvent[]): CarriedRevocations {
  const byId = new Map<number, Revocation>()
  const lifts = new Map<number, RevocationLift>()
  for (const e of events) {
    for (const r of revocationsOf(e)) byId.set(r.id, r)
    for (const l of liftsOf(e)) lifts.set(l.id, l)
  }
  for (const [id, l] of lifts) {
    const r = byId.get(id)
    if (r) { byId.set(id, withLift(r, l)); lifts.delete(id) }
  }
  return { revocations: [...byId.values()].sort((a, b) => a.id - b.id), lifts: [...lifts.values()].sort((a, b) => a.id - b.id) }
}

function withLift(r: Revocation, l: RevocationLift): Revocation {
  return { ...r, liftedAt: l.liftedAt, ...(l.liftedBy !== undefined ? { liftedBy: l.liftedBy } : {}) }
}

/** Revocations as stated, without any lift (lifts are applied separately: they may live in another record). */
function revocationsOf(e: AuditEvent): Revocation[] {
  if (e.type === 'audit.checkpoint') return carriedRevocations(e).map(({ liftedAt: _a, liftedBy: _b, ...r }) => r)
  const r = revocationOfEvent(e)
  return r ? [r] : []
}

function liftsOf(e: AuditEvent): RevocationLift[] {
  if (e.type === 'audit.checkpoint') {
    return [
      ...carriedRevocations(e).filter((r) => typeof r.liftedAt === 'number').map((r) => ({ id: r.id, liftedAt: r.liftedAt!, ...(r.liftedBy !== undefined ? { liftedBy: r.liftedBy } : {}) })),
      ...arrayOf(e.detail?.lifts).filter(isLift),
    ]
  }
  const l = liftOfEvent(e)
  return l ? [l] : []
}

/*
 * A checkpoint's lists are read with care: the broker writes only well-formed entries, but a record someone
 * appended by hand (the chain has no key, docs/audit.md) may hold anything, and a `null` among them made the
 * check, and so `audit verify` and the start-up, fail with an internal error. Such entries vouch for no row;
 * revocationDifferences names them.
 */
function carriedRevocations(e: AuditEvent): Revocation[] {
  return arrayOf(e.detail?.revocations).filter(isCarriedRevocation)
}

/**
 * Entries of a checkpoint's lists that are neither a revocation nor a lift; a list present but not an array
 * counts as one. Read as empty, such a list let `audit verify` pass, and retention erase the record with
 * nothing of it in the next checkpoint. (Absent lists are fine: checkpoints of older brokers have none.)
 */
function malformedEntries(e: AuditEvent): number {
  if (e.type !== 'audit.checkpoint') return 0
  const notAList = (v: unknown) => v !== undefined && !Array.isArray(v) ? 1 : 0
  const revocations = arrayOf(e.detail?.revocations)
  const lifts = arrayOf(e.detail?.lifts)
  return notAList(e.detail?.revocations) + notAList(e.detail?.lifts)
    + revocations.length - revocations.filter(isCarriedRevocation).length + lifts.length - lifts.filter(isLift).length
}

function arrayOf(v: unknown): unknown[] {
  return Array.isArray(v) ? v : []
}

/** Whether each of these optional fields is absent or of its type: a `liftedAt: "yesterday"` was read as no lift. */
function optionalOfType(r: Record<string, unknown>, fields: Record<string, 'number' | 'string'>): boolean {
  return Object.entries(fields).every(([f, t]) => r[f] === undefined || typeof r[f] === t)
}

function isCarriedRevocation(v: unknown): v is Revocation {
  if (typeof v !== 'object' || v === null) return false
  const r = v as Record<string, unknown>
  return typeof r.id === 'number' && REVOCATION_KINDS.includes(r.kind as Revocation['kind']) && typeof r.value === 'string'
    && typeof r.revokedAt === 'number' && typeof r.until === 'number'
    && optionalOfType(r, { gen: 'number', iss: 'string', reason: 'string', revokedBy: 'string', liftedAt: 'number', liftedBy: 'string' })
}

function isLift(v: unknown): v is RevocationLift {
  if (typeof v !== 'object' || v === null) return false
  const l = v as Record<string, unknown>
  return typeof l.id === 'number' && typeof l.liftedAt === 'number' && optionalOfType(l, { liftedBy: 'string' })
}

/**
 * Why a record that states revocations states something that is not well-formed, or undefined. Every
 * `token.revoked` record the broker wrote carries `detail.revocation` (id, kind, value, until: since its first
 * store) and every `token.unrevoked` one `detail.lift` (id, liftedAt), so one without them was appended by
 * someone else or corrupted. Skipped as saying nothing, it hid what it was meant to state (a lift that
 * undoes a revocation, a revocation whose row is gone) behind a green check; it is reported instead.
 */
export function malformedRevocationRecord(seq: number, e: AuditEvent): string | undefined {
  if (e.type === 'token.revoked' && revocationOfEvent(e) === undefined) return `the token.revoked record at seq ${seq} states no well-formed revocation (not written by the broker, or corrupted)`
  if (e.type === 'token.unrevoked' && liftOfEvent(e) === undefined) return `the token.unrevoked record at seq ${seq} states no well-formed lift (not written by the broker, or corrupted)`
  const malformed = malformedEntries(e)
  if (malformed > 0) return `the record at seq ${seq} states ${malformed} revocation${malformed === 1 ? '' : 's'} or lift${malformed === 1 ? '' : 's'} that ${malformed === 1 ? 'is' : 'are'} not well-formed`
  return undefined
}

/** Every difference between the table and the chain, one sentence each; empty when they agree. */
export function revocationDifferences(ev: RevocationEvidence): string[] {
  const out: string[] = []
  const chained: Chained = new Map()
  for (const rec of ev.records) {
    const malformed = malformedRevocationRecord(rec.seq, rec.event)
    if (malformed !== undefined) out.push(malformed)
    for (const rev of revocationsOf(rec.event)) {
      const seen = chained.get(rev.id)
      if (seen && fieldDifferences(seen.rev, rev).length > 0) out.push(`revocation ${rev.id} is recorded differently at seq ${seen.seq} and seq ${rec.seq}`)
      else if (!seen) chained.set(rev.id, { rev, seq: rec.seq })
    }
  }
  for (const rec of ev.records) {
    for (const l of liftsOf(rec.event)) {
      const stated = chained.get(l.id)
      if (!stated) { out.push(`a lift at seq ${rec.seq} names revocation ${l.id}, which no record states`); continue }
      const named = liftNamedDifference(rec.event, stated.rev)
      if (named !== undefined) out.push(`the lift at seq ${rec.seq} names revocation ${l.id} as ${named}, but its record at seq ${stated.seq} states ${labelWithIss(stated.rev)} (edited)`)
      if (stated.rev.liftedAt === undefined) stated.rev = withLift(stated.rev, l)
    }
  }
  const rows = new Map(ev.rows.map((r) => [r.id, r]))
  for (const [id, { rev, seq }] of chained) {
    const row = rows.get(id)
    if (!row) { out.push(`revocation ${id} (${label(rev)}), recorded at seq ${seq}, is missing from the revocations table (deleted)`); continue }
    const diff = fieldDifferences(rev, row)
    if (diff.length > 0) out.push(`revocation ${id} (${label(rev)}) differs from its record at seq ${seq}: ${diff.join(', ')} (edited)`)
  }
  for (const row of ev.rows) {
    if (!chained.has(row.id)) out.push(`revocation ${row.id} (${label(row)}) has no token.revoked record (inserted outside the broker)`)
  }
  const expected = new Map<string, number>()
  for (const { rev } of chained.values()) {
    if (rev.kind === 'role' && rev.gen !== undefined) expected.set(rev.value, Math.max(expected.get(rev.value) ?? 0, rev.gen))
  }
  for (const [role, gen] of expected) {
    const actual = ev.generations.get(role)
    if (actual !== gen) out.push(`role ${role} is at generation ${actual ?? 'none'} but its recorded revocations raised it to ${gen}`)
  }
  for (const [role, gen] of ev.generations) {
    if (!expected.has(role)) out.push(`role ${role} is at generation ${gen} with no recorded role revocation`)
  }
  if (ev.active) out.push(...activeDifferences(ev.rows, ev.active))
  return out
}

/**
 * Where the read of the active entries departs from the whole table, filtered here: each is an index, a
 * view, a rule or a policy answering that query otherwise than the rows it reads.
 */
function activeDifferences(rows: readonly Revocation[], active: { at: number; rows: Revocation[] }): string[] {
  const out: string[] = []
  const answered = new Map(active.rows.map((r) => [r.id, r]))
  const inForce = rows.filter((r) => r.until >= active.at && r.liftedAt === undefined)
  for (const row of inForce) {
    const got = answered.get(row.id)
    if (!got) out.push(`revocation ${row.id} (${label(row)}) is in force in the revocations table but the read of the active revocations leaves it out (an index or view disagreeing with the table: a broker starting now would not enforce it)`)
    else if (FIELDS.some((f) => row[f] !== got[f])) out.push(`revocation ${row.id} (${label(row)}) is read differently by the read of the active revocations, in ${FIELDS.filter((f) => row[f] !== got[f]).join(', ')} (an index or view disagreeing with the table)`)
    answered.delete(row.id)
  }
  for (const extra of answered.values()) out.push(`the read of the active revocations returns revocation ${extra.id} (${label(extra)}), which the revocations table does not show in force (an index or view disagreeing with the table)`)
  return out
}

/** Runs the check over a store's evidence; `unverified` says why the evidence itself is not authenticated. */
export function verifyRevocationEvidence(ev: RevocationEvidence, unverified?: string): RevocationVerification {
  const differences = revocationDifferences(ev)
  if (unverified !== undefined) return { ok: false, revocations: ev.rows.length, differences, unverified }
  return differences.length === 0 ? { ok: true, revocations: ev.rows.length } : { ok: false, revocations: ev.rows.length, differences }
}

/** What a check is given (storage/revocation_check.ts says what each does). */
export interface AnchoredCheckOptions { anchorKey?: Buffer; anchorCopy?: AnchorCopy; signal?: AbortSignal; onAnchorWrite?: (failure: unknown) => void }

/**
 * Start-up gate: a broker must not serve with a revocation set the audit chain does not vouch for (one
 * deleted row would silently un-revoke). Throws a one-line OperatorError naming the first difference.
 */
export async function assertRevocationsMatchAudit(
  store: { verifyRevocations(options?: AnchoredCheckOptions): Promise<RevocationVerification> },
  options: AnchoredCheckOptions = {},
): Promise<void> {
  const v = await store.verifyRevocations(options)
  if (v.ok) return
  if (v.unverified !== undefined) {
    throw new OperatorError('EREVOCATIONS', `the audit chain cannot vouch for the revocations table: ${v.unverified}; run "audit verify"`)
  }
  const more = v.differences.length > 1 ? ` (and ${v.differences.length - 1} more)` : ''
  throw new OperatorError('EREVOCATIONS', `revocations differ from the audit chain: ${v.differences[0]}${more}; run "audit verify" and restore the revocations table from a backup`)
}

const FIELDS = ['kind', 'value', 'iss', 'revokedAt', 'until', 'gen', 'reason', 'revokedBy', 'liftedAt', 'liftedBy'] as const

function fieldDifferences(recorded: Revocation, stored: Revocation): string[] {
  const out: string[] = []
  for (const f of FIELDS) {
    if (recorded[f] !== stored[f]) out.push(`${f} ${JSON.stringify(stored[f] ?? null)}, recorded ${JSON.stringify(recorded[f] ?? null)}`)
  }
  return out
}

/**
 * What a lift record says it lifted (`detail.lift` kind, value and iss, written since lifts named their entry), when
 * that is not the revocation its id names; undefined when it agrees or, written before, names nothing. audit list
 * prints it as what was lifted, so it is held to the record of the entry like the id is.
 */
function liftNamedDifference(e: AuditEvent, stated: Revocation): string | undefined {
  if (e.type !== 'token.unrevoked') return undefined
  const l = e.detail?.lift as Record<string, unknown> | undefined
  if (!l || (l.kind === undefined && l.value === undefined && l.iss === undefined)) return undefined
  if (l.kind === stated.kind && l.value === stated.value && l.iss === stated.iss) return undefined
  return `${String(l.kind)} ${JSON.stringify(l.value) ?? 'undefined'}${l.iss !== undefined ? ` at iss ${JSON.stringify(l.iss)}` : ''}`
}

function labelWithIss(r: Revocation): string {
  return `${label(r)}${r.iss !== undefined ? ` at iss ${JSON.stringify(r.iss)}` : ''}`
}

function label(r: Revocation): string {
  return `${r.kind} ${JSON.stringify(r.value)}`
}
