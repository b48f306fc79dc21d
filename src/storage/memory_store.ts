import type { AuditPage, AuditQuery } from '../audit/audit_log.ts'
import { assertCountQuery, COUNTED_TYPES, type CountQuery, type CountRow, type LiveRow, type ReasonRow } from '../audit/aggregate.ts'
import { GENESIS_HASH, rowToRecord, type AuditColumns, type StoredRow } from '../audit/chain.ts'
import { countReasonsOfBodies } from '../audit/unreadable_record.ts'
import { INITIAL_GENERATION, type IssuanceHorizons, type Revocation } from '../revocation/revocation.ts'
import { HorizonTracker, noHorizons, revocationUntil, wider } from './issuance_horizon.ts'
import { revocationsToCarry } from '../revocation/revocation_consistency.ts'
import { ChainedStore } from './chained_store.ts'
import { assertPageSize, decodeCursor, equalityFilters, toPage } from './audit_pages.ts'
import { chainRow, checkpointEventBody, eventRow, revocationEventBody } from './appended_rows.ts'
import { foundMacFrom, openedMacEra } from './mac_era.ts'
import { PRUNE_RANGE_CHANGED, stateChanged } from './prune_range.ts'
import { activeCheckTime, statesRevocations } from './revocation_rows.ts'
import type { RevocationState } from './chain_source.ts'
import type { WriteOp } from './write_ops.ts'
import type { GroupCommitOptions } from './group_commit.ts'
import { MACS_STARTED, type AuditMacKey } from '../audit/record_mac.ts'
import { applyRenewal, type RenewalTable } from './pilot_renewals.ts'
import { nextConfirmation, type CredentialConfirmation, type CredentialWrite, type StoredCredential } from '../credentials/credential_store.ts'
import type { SessionWrite, StoredSession } from '../console/session_store.ts'

interface RenewalEntry { successor: string; retries: number; superseded: number; renewedAt: number; expires: number }

/**
 * In-process store for unit and HTTP tests and throwaway runs: same chain, same group commit, same
 * semantics as the SQL backends (it passes the same contract suite), nothing survives the process.
 */
export class MemoryStore extends ChainedStore {
  readonly backend = 'memory' as const
  #rows: StoredRow[] = []
  #head = { seq: 0, hash: GENESIS_HASH }
  #revocations: Revocation[] = []
  #generations = new Map<string, number>()
  /** Slots used per pilot enrolment credential. */
  #redemptions = new Map<string, number>()
  /** Renewed and retired pilot tokens by jti (pilot_renewals.ts). */
  #renewals = new Map<string, RenewalEntry>()
  #horizon = new HorizonTracker()
  /** The issuance horizon rows (issuance_horizon.ts). */
  #horizonRows: IssuanceHorizons = noHorizons()
  #anchor: string | undefined
  #credentials = new Map<string, StoredCredential>()
  /** Console sessions by id digest, in creation order. */
  #sessions = new Map<string, StoredSession>()

  /** Where the MAC era began, once a committed batch knew it. */
  #macFrom: number | undefined

  constructor(options: { groupCommit?: Partial<GroupCommitOptions>; auditMac?: AuditMacKey } = {}) {
    super(options)
  }

  protected commitBatch(ops: WriteOp[]): void {
    // Stage everything, then publish at once: a failing op leaves no trace (all-or-nothing like a transaction).
    const rows: StoredRow[] = []
    const revocations: Revocation[] = []
    const generations = new Map(this.#generations)
    const redemptions = new Map<string, number>()
    const renewals = new Map<string, RenewalEntry>()
    const renewal = (jti: string) => renewals.get(jti) ?? this.#renewals.get(jti)
    const table: RenewalTable = {
      insert: (jti, successor, renewedAt, expires) => {
        if (renewal(jti)) return false
        renewals.set(jti, { successor, retries: 0, superseded: 0, renewedAt, expires })
        return true
      },
      read: (jti) => { const r = renewal(jti); return r && { ...r, renewed_at: r.renewedAt } },
      has: (jti) => renewal(jti) !== undefined,
      retry: (jti, successor, renewedAt) => { const r = renewal(jti)!; renewals.set(jti, { ...r, successor, renewedAt, retries: r.retries + 1 }) },
      retire: (jti, successor, renewedAt, expires) => { if (!renewal(jti)) renewals.set(jti, { successor, retries: 0, superseded: 1, renewedAt, expires }) },
    }
    let pruneRenewalsAt: number | undefined
    const credentials = new Map(this.#credentials)
    let sessions: Map<string, StoredSession> | undefined
    let pruneThrough = 0
    let { seq, hash } = this.#head
    this.#horizon.begin()
    const append = (body: string, cols: AuditColumns) => {
      seq++
      const row = chainRow(seq, hash, body, cols, this.auditMac)
      rows.push(row)
      hash = row.hash
      this.#horizon.observe(cols)
    }
    let macFrom = this.#macFrom
    if (this.auditMac && macFrom === undefined) macFrom = openedMacEra(this.#foundMacFrom(), seq + 1, this.auditMac, append)
    let nextId = (this.#revocations.at(-1)?.id ?? 0) + 1
    const results: Array<() => void> = []
    const lifted = new Map<number, Revocation>()
    for (const op of ops) {
      if (op.kind === 'event') { const { body, cols } = eventRow(op.json); append(body, cols) }
      else if (op.kind === 'redeem') {
        const used = redemptions.get(op.credential) ?? this.#redemptions.get(op.credential) ?? 0
        const outcome = used < op.limit ? { redeemed: true as const, slot: used + 1 } : { redeemed: false as const, used }
        if (outcome.redeemed) redemptions.set(op.credential, used + 1)
        const { body, cols } = eventRow(outcome.redeemed ? op.json : op.denyJson)
        append(body, cols)
        results.push(() => { op.result = outcome })
      } else if (op.kind === 'renew') {
        const { json, result } = applyRenewal(op, table)
        const { body, cols } = eventRow(json)
        append(body, cols)
        results.push(() => { op.result = result })
      } else if (op.kind === 'credential') {
        const changed = applyCredentialWrite(credentials, op.write)
        if (changed) { const { body, cols } = eventRow(op.json); append(body, cols) }
        results.push(() => { op.result = changed })
      } else if (op.kind === 'session') {
        sessions ??= new Map(this.#sessions)
        applySessionWrite(sessions, op.write)
      } else if (op.kind === 'confirm') {
        const changed = applyConfirmation(credentials, op.confirm)
        results.push(() => { op.result = changed })
      } else if (op.kind === 'revoke') {
        let gen: number | undefined
        if (op.rev.kind === 'role') {
          gen = (generations.get(op.rev.value) ?? INITIAL_GENERATION) + 1
          generations.set(op.rev.value, gen)
        }
        const until = revocationUntil(op.rev, Math.max(this.#horizonRows.token.exp, this.#horizon.batchTokenExp))
        const rev: Revocation = { ...op.rev, until, id: nextId++, ...(gen !== undefined ? { gen } : {}) }
        revocations.push(rev)
        const { body, cols } = revocationEventBody(op.event, rev)
        append(body, cols)
        // A copy, as a database hands back: the caller's object is not the stored row.
        results.push(() => { op.result = { ...rev } })
      } else if (op.kind === 'lift') {
        const i = this.#revocations.findIndex((r) => r.id === op.lift.id && r.liftedAt === undefined)
        if (i < 0 || lifted.has(i)) continue
        const rev: Revocation = { ...this.#revocations[i]!, liftedAt: op.lift.liftedAt, ...(op.lift.liftedBy !== undefined ? { liftedBy: op.lift.liftedBy } : {}) }
        lifted.set(i, rev)
        const { body, cols } = eventRow(op.json)
        append(body, cols)
        results.push(() => { op.result = { ...rev } })
      } else {
        // As the SQL backends: only the range ChainedStore.prune checked, and only if it is unchanged.
        const all = [...this.#rows.filter((r) => r.seq > pruneThrough), ...rows]
        const { first, through, hash: throughHash } = op.range
        const pruned = all.filter((r) => r.seq <= through)
        if (all[0] !== undefined && all[0].seq > first) { results.push(() => { op.result = { pruned: 0 } }); continue }
        if (all[0]?.seq !== first || pruned.at(-1)?.seq !== through || pruned.at(-1)?.hash !== throughHash || pruned.length !== through - first + 1) {
          results.push(() => { op.result = PRUNE_RANGE_CHANGED })
          continue
        }
        if (stateChanged(op.range, pruned.filter(isRevocationRecord))) { results.push(() => { op.result = PRUNE_RANGE_CHANGED }); continue }
        pruneThrough = through
        if (op.renewals) pruneRenewalsAt = op.now
        const carried = revocationsToCarry(pruned.filter(isRevocationRecord).map((r) => rowToRecord(r).event))
        const { body, cols } = checkpointEventBody({ prunedThroughSeq: through, prunedLastHash: pruned.at(-1)!.hash, prunedCount: pruned.length, before: op.before, ...(macFrom !== undefined ? { macFrom } : {}) }, carried, op.now)
        append(body, cols)
        const checkpointSeq = seq
        results.push(() => { op.result = { pruned: pruned.length, checkpointSeq } })
      }
    }
    if (pruneThrough > 0) this.#rows = this.#rows.filter((r) => r.seq > pruneThrough)
    this.#rows.push(...rows)
    for (const [i, rev] of lifted) this.#revocations[i] = rev
    this.#revocations.push(...revocations)
    this.#generations = generations
    for (const [k, v] of redemptions) this.#redemptions.set(k, v)
    for (const [k, v] of renewals) this.#renewals.set(k, v)
    if (pruneRenewalsAt !== undefined) for (const [k, v] of this.#renewals) if (v.expires < pruneRenewalsAt) this.#renewals.delete(k)
    this.#credentials = credentials
    if (sessions) this.#sessions = sessions
    this.#head = { seq, hash }
    for (const [kind, h] of this.#horizon.raises()) this.#horizonRows = { ...this.#horizonRows, [kind]: wider(this.#horizonRows[kind], h) }
    this.#horizon.committed()
    if (this.auditMac) this.#macFrom = macFrom
    for (const r of results) r()
  }

  protected async *scanRows(fromSeq: number): AsyncIterable<StoredRow> {
    for (const r of this.#rows) if (r.seq >= fromSeq) yield { ...r }
  }

  protected async readHead(): Promise<{ seq: number; hash: string }> {
    return { ...this.#head }
  }

  async macsBeganAt(): Promise<number | undefined> {
    return this.#foundMacFrom()
  }

  /** Where the MAC era began, as the SQL backends find it (MACS_STARTED_SQL, LAST_CHECKPOINT_SQL). */
  #foundMacFrom(): number | undefined {
    return foundMacFrom(this.#rows.find((r) => r.type === MACS_STARTED)?.seq, this.#rows.findLast((r) => r.type === 'audit.checkpoint')?.body)
  }

  async query(q: AuditQuery): Promise<AuditPage> {
    assertPageSize(q.limit)
    const eq = equalityFilters(q)
    const c = q.cursor !== undefined ? decodeCursor(q.cursor) : undefined
    const hits = this.#rows
      .filter((r) => eq.every(([col, v]) => r[col] === v)
        && (q.from === undefined || r.time >= q.from)
        && (q.to === undefined || r.time <= q.to)
        && (c === undefined || r.time < c.time || (r.time === c.time && r.seq < c.seq)))
      .sort((a, b) => b.time - a.time || b.seq - a.seq)
    return toPage(hits, q.limit)
  }

  async countByTime(q: CountQuery): Promise<CountRow[]> {
    assertCountQuery(q)
    const counts = new Map<string, CountRow>()
    for (const r of this.#rows) {
      if (r.time < q.from || r.time > q.to || !(COUNTED_TYPES as readonly string[]).includes(r.type)) continue
      const bucket = Math.floor(r.time / q.bucketSeconds) * q.bucketSeconds
      const id = JSON.stringify([bucket, r.type, r.role, r.site, r.token_kind])
      const row = counts.get(id) ?? { bucket, type: r.type as CountRow['type'], role: r.role, site: r.site, token_kind: r.token_kind, count: 0 }
      row.count++
      counts.set(id, row)
    }
    return [...counts.values()]
  }

  async countDenialReasons(q: { from: number; to: number }): Promise<ReasonRow[]> {
    assertCountQuery(q)
    return countReasonsOfBodies(this.#rows.filter((r) => r.time >= q.from && r.time <= q.to && r.type === 'token.denied').map((r) => r.body))
  }

  async countLive(q: { now: number; since: number }): Promise<LiveRow[]> {
    const counts = new Map<string, LiveRow>()
    for (const r of this.#rows) {
      if (r.time < q.since || (r.type !== 'token.issued' && r.type !== 'token.renewed') || r.exp === null || r.exp <= q.now) continue
      const id = JSON.stringify([r.site, r.role])
      const row = counts.get(id) ?? { site: r.site, role: r.role, count: 0 }
      row.count++
      counts.set(id, row)
    }
    return [...counts.values()]
  }

  async listRevocations(options: { activeAt?: number } = {}): Promise<Revocation[]> {
    return this.#revocations.filter((r) => options.activeAt === undefined || (r.until >= options.activeAt && r.liftedAt === undefined)).map((r) => ({ ...r }))
  }

  async readCredential(user: string, provider: string): Promise<StoredCredential | undefined> {
    const c = this.#credentials.get(credentialKey(user, provider))
    return c ? structuredClone(c) : undefined
  }

  async credentialByVaultToken(sha256: string): Promise<StoredCredential | undefined> {
    for (const c of this.#credentials.values()) if (c.vaultTokenSha256 === sha256) return structuredClone(c)
    return undefined
  }

  async listCredentials(): Promise<StoredCredential[]> {
    return [...this.#credentials.values()].map((c) => structuredClone(c)).sort((a, b) => a.user.localeCompare(b.user) || a.provider.localeCompare(b.provider))
  }

  async countLiveCredentials(user: string, except: string): Promise<number> {
    let n = 0
    for (const c of this.#credentials.values()) if (c.user === user && c.provider !== except && !c.revoked) n++
    return n
  }

  async readConsoleSession(idSha256: string): Promise<StoredSession | undefined> {
    const row = this.#sessions.get(idSha256)
    return row ? { ...row } : undefined
  }

  /** Test hook: the console sessions table, to read or tamper with as an attacker with DB access would. */
  rawSessions(): Map<string, StoredSession> {
    return this.#sessions
  }

  async roleGenerations(): Promise<Map<string, number>> {
    return new Map(this.#generations)
  }

  /** Nothing to do: every record of a memory store went through its own tracker. */
  async reseedHorizons(): Promise<void> {}

  async issuanceHorizon(): Promise<IssuanceHorizons> {
    return { token: { ...this.#horizonRows.token }, certificate: { ...this.#horizonRows.certificate } }
  }

  protected async readRevocationState(): Promise<RevocationState> {
    // The active entries from the same rows: a second read, a turn later, could see a revoke committed between.
    const rows = await this.listRevocations()
    const at = activeCheckTime()
    const active = { at, rows: rows.filter((r) => r.until >= at && r.liftedAt === undefined) }
    return { head: { ...this.#head }, firstSeq: this.#rows[0]?.seq ?? 0, rows, active, generations: await this.roleGenerations(), horizons: this.#horizonRows }
  }

  protected async readRows(seqs: readonly number[]): Promise<StoredRow[]> {
    const want = new Set(seqs)
    return this.#rows.filter((r) => want.has(r.seq)).map((r) => ({ ...r }))
  }

  protected async readAnchor(): Promise<string | undefined> {
    return this.#anchor
  }

  protected async writeAnchor(sealed: string): Promise<void> {
    this.#anchor = sealed
  }

  /** Test hook: the raw rows, so a test can tamper with them as an attacker with DB access would. */
  rawRows(): StoredRow[] {
    return this.#rows
  }

  /** Test hook: drops the records after `seq` and moves the head back to it, as an insider's cut-back would. */
  rawTruncate(seq: number): void {
    this.#rows = this.#rows.filter((r) => r.seq <= seq)
    this.#head = { seq, hash: this.#rows.at(-1)!.hash }
  }

  /** Test hook: sets the token horizon's exp, as an UPDATE of issuance_horizon would. */
  rawSetTokenHorizonExp(exp: number): void {
    this.#horizonRows = { ...this.#horizonRows, token: { ...this.#horizonRows.token, exp } }
  }

  /** Test hook: deletes the sealed anchor, as `DELETE FROM audit_anchor` would. */
  rawDeleteAnchor(): void {
    this.#anchor = undefined
  }

  /** Test hook: the revocations table and role generations, to tamper with likewise. */
  rawRevocations(): { revocations: Revocation[]; generations: Map<string, number> } {
    return { revocations: this.#revocations, generations: this.#generations }
  }

  protected async closeBackend(): Promise<void> {}
}

function credentialKey(user: string, provider: string): string {
  return `${user}\n${provider}`
}

/** The SQL backends' CredentialWrite semantics on a staged map. */
function applyCredentialWrite(map: Map<string, StoredCredential>, w: CredentialWrite): boolean {
  if (w.action === 'register') {
    const held = map.get(credentialKey(w.credential.user, w.credential.provider))
    if (held && w.replacing !== undefined && (held.sealed?.nonce ?? null) !== w.replacing) return false
    const { rotatedAt: _r, revokedAt: _ra, revokedBy: _rb, confirmation: _c, ...fresh } = w.credential
    map.set(credentialKey(w.credential.user, w.credential.provider), { ...structuredClone(fresh), revoked: false })
    return true
  }
  const key = credentialKey(w.user, w.provider)
  const cur = map.get(key)
  if (!cur || cur.revoked) return false
  if (w.action === 'rotate') {
    if (cur.sealed?.nonce !== w.previousNonce) return false
    map.set(key, { ...cur, sealed: { ...w.sealed }, rotatedAt: w.rotatedAt })
    return true
  }
  if (w.ifNonce !== undefined && cur.sealed?.nonce !== w.ifNonce) return false
  const { sealed: _s, ...rest } = cur
  map.set(key, { ...rest, revoked: true, revokedAt: w.revokedAt, revokedBy: w.revokedBy })
  return true
}

/** The SQL backends' confirmation write (nextConfirmation) on a staged map. */
function applyConfirmation(map: Map<string, StoredCredential>, c: CredentialConfirmation): boolean {
  const key = credentialKey(c.user, c.provider)
  const cur = map.get(key)
  const next = nextConfirmation(cur, c)
  if (!cur || !next) return false
  map.set(key, { ...cur, confirmation: structuredClone(next) })
  return true
}

/** The SQL backends' SessionWrite semantics (session_store.ts) on a staged map. */
function applySessionWrite(map: Map<string, StoredSession>, w: SessionWrite): void {
  if (w.action === 'delete') { map.delete(w.idSha256); return }
  if (w.action === 'touch') {
    const cur = map.get(w.idSha256)
    if (cur) map.set(w.idSha256, { ...cur, lastSeenAt: w.at })
    return
  }
  let swept = 0
  for (const [k, s] of map) if (swept < w.sweep && s.expiresAt <= w.now) { map.delete(k); swept++ }
  map.set(w.session.idSha256, { ...w.session })
  // The new session stays; of the others, the newest max - 1 (by sign-in time, then digest, as in SQL).
  const others = [...map.values()].filter((s) => s.idSha256 !== w.session.idSha256)
    .sort((a, b) => b.createdAt - a.createdAt || (a.idSha256 < b.idSha256 ? 1 : a.idSha256 > b.idSha256 ? -1 : 0))
  for (const s of others.slice(Math.max(0, w.max - 1))) map.delete(s.idSha256)
}

function isRevocationRecord(r: StoredRow): boolean {
  return statesRevocations(r.type)
}
