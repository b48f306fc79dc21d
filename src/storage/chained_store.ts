import type { AuditEvent, AuditPage, AuditQuery, AuditRecord, AuditStore, ChainVerification, PruneResult } from '../audit/audit_log.ts'
import type { AuditAggregates, CountQuery, CountRow, LiveRow, ReasonRow } from '../audit/aggregate.ts'
import { openAnchor, readSealedAnchor, sealAnchor, type AnchorCopy, type AnchorReading, type ChainAnchor } from '../audit/anchor.ts'
import { assertStorableEvent, ChainVerifier, HEAD_MISSING, type ChainHead, checkRecord, columnsOf, encodeEventBody, judgeRecordMac, macFromValue, type MacCheck, type MacVerdict, recordHash, rowToRecord, statedMacFrom, type AuditColumns, type CheckpointDetail, type StoredRow } from '../audit/chain.ts'
import { macProblem, MACS_STARTED, recordMac, type AuditMacKey } from '../audit/record_mac.ts'
import { InvalidRequest, OperatorError } from '../errors.ts'
import type { CredentialConfirmation, CredentialStore, CredentialWrite, StoredCredential } from '../credentials/credential_store.ts'
import type { ConsoleSessionStore, SessionWrite, StoredSession } from '../console/session_store.ts'
import type { IssuanceHorizon, IssuanceHorizons, NewRevocation, Revocation, RevocationLift, RevocationStore } from '../revocation/revocation.ts'
import { GroupCommitter, StoreOverloaded, type CommitStats, type Committer, type GroupCommitOptions } from './group_commit.ts'
import type { PilotRenewal, RenewalOutcome, RenewOp } from './pilot_renewals.ts'
import { malformedRevocationRecord, verifyRevocationEvidence, type CarriedRevocations, type RevocationVerification } from '../revocation/revocation_consistency.ts'
import { asStoreOutage } from './store_outage.ts'

/** One queued write. Results are filled in by the backend inside the transaction. */
export type WriteOp =
  | { kind: 'event'; json: string }
  | { kind: 'revoke'; rev: NewRevocation; event: AuditEvent; result?: Revocation }
  /** `result` stays undefined (and nothing is appended) when the entry is unknown or already lifted. */
  | { kind: 'lift'; lift: RevocationLift; json: string; result?: Revocation }
  /** Deletes records `range.first..range.through`, which the chain was found to vouch for (ChainedStore.prune). */
  /** `result` is PRUNE_RANGE_CHANGED (nothing deleted, nothing appended) when the log changed since the check. */
  | { kind: 'prune'; before: number; now: number; range: PruneRange; result?: PruneResult | typeof PRUNE_RANGE_CHANGED }
  | RedeemOp
  | RenewOp
  /** A credential change and its record, together or not at all; `result` false (nothing appended) when a rotate or revoke changed nothing. */
  | { kind: 'credential'; write: CredentialWrite; json: string; result?: boolean }
  /**
   * A console session row: written in a batch's transaction like the others (for SQLite by the writer
   * thread, so no second connection contends for the write lock), but not an audit record: nothing is appended.
   */
  | { kind: 'session'; write: SessionWrite }
  /** IAM's confirmation kept on a credential row; not an audit record (the tokens minted under it record it). */
  | { kind: 'confirm'; confirm: CredentialConfirmation; result?: boolean }

/**
 * The records one prune deletes, checked before the transaction: first..through, and the hash of `through`.
 * The transaction refuses when the log no longer starts at `first` or `through` no longer has that hash.
 */
export interface PruneRange { first: number; through: number; hash: string }

/**
 * A prune's transaction found the log changed between the check and the delete. It refuses as a result, not
 * by throwing, which would fail the other records of its batch.
 */
export const PRUNE_RANGE_CHANGED = 'the audit log changed while retention checked it; not pruning (run "audit verify")'

/** The ops that hand a `result` back to their caller: all but an event and a console session write. */
export function returnsResult(op: WriteOp): op is Exclude<WriteOp, { kind: 'event' | 'session' }> {
  return op.kind !== 'event' && op.kind !== 'session'
}

/**
 * One redemption of a pilot enrolment credential: inside the transaction, if fewer than `limit` slots of
 * `credential` are used, take the next one and append `json` (the issued token's record); otherwise
 * append `denyJson` (its refusal) and take nothing. Count and record commit together or not at all.
 */
export interface RedeemOp { kind: 'redeem'; credential: string; limit: number; json: string; denyJson: string; result?: RedemptionOutcome }

/** What a redemption got: the slot it took (1-based), or a refusal with the slots already used. */
export type RedemptionOutcome = { redeemed: true; slot: number } | { redeemed: false; used: number }
/** What abandon() cut: connections still open to the database, and writes (records, changes) not committed. */
export interface AbandonedWork { connections: number; unwritten: number }

/** Everything a backend stores: the audit chain and the revocations it records. */
export interface BrokerStore extends AuditStore, AuditAggregates, RevocationStore, CredentialStore, ConsoleSessionStore {
  readonly backend: 'sqlite' | 'postgres' | 'memory'
  /** Group-commit counters (committed batches and records), for benchmarks and metrics. */
  commitStats(): CommitStats
  /** Makes every later write fail (a command that reads without the audit MAC key). */
  refuseWrites(): void
  /**
   * Where the log's MAC era began, as a writer finds it (its audit.macs_started record, else what the newest
   * checkpoint carries), or undefined for a log with no MACs yet: then, and only then, a new audit MAC key
   * opens the era instead of leaving MAC'd records failing their check (open_store.ts).
   */
  macsBeganAt(): Promise<number | undefined>
  /** Calls `listener` with the size of every batch committed from now on (metrics); replaces any earlier one. */
  observeBatches(listener: (items: number) => void): void
  /** Whether writes can commit, as far as this process has seen: for readiness. */
  writeHealth(): WriteHealth
  /**
   * For a stop the database holds up (it neither answers nor fails): cuts every connection to it, so what
   * waits on one fails at once and close() can end. Writes not committed by then fail, and their callers
   * were never told they committed. Only backends with a server to wait on have it.
   */
  abandon?(): AbandonedWork
  /**
   * Compares the revocations table and role generations with what the chained records state, using only
   * records authenticated by the chain. With `anchorKey`, resumes from the sealed anchor of the last check
   * (re-checking the revocation records it lists, hashing only newer records) and seals a new one.
   */
  verifyRevocations(options?: VerifyRevocationsOptions): Promise<RevocationVerification>
  /**
   * The whole chain and the revocations against it, in one pass (audit verify). With `anchorKey`, also the
   * log against each sealed anchor (the database's and `anchorCopy`), as the start-up check compares them,
   * without resuming from them or sealing a new one.
   */
  verifyAll(options?: { anchorKey?: Buffer; anchorCopy?: AnchorCopy }): Promise<{ chain: ChainVerification; revocations: RevocationVerification; anchors?: AnchorCheck[] }>
  /** Folds the whole log into the issuance horizons again (ChainedStore.reseedHorizons). */
  reseedHorizons(): Promise<void>
  /** Takes one slot of a pilot enrolment credential atomically with its audit record (RedeemOp). */
  redeemPilotSlot(credential: string, limit: number, issued: AuditEvent, refused: AuditEvent): Promise<RedemptionOutcome>
  /**
   * Records a pilot token's renewal unless the token it replaces was renewed already and this is no retry:
   * then records `refused`, completed with the reused jti and its successor (pilot_renewals.ts), or `stale`
   * so completed when this attempt was minted before that successor was. The judgement and the record commit
   * together, under the lock every replica's writes take.
   */
  renewPilotToken(renewal: PilotRenewal, renewed: AuditEvent, refused: AuditEvent, stale: AuditEvent): Promise<RenewalOutcome>
}

/**
 * `anchorKey`: resume from the sealed anchor and seal a new one. `anchorCopy`: also check against, and
 * refresh, the copy of the anchor kept outside the database. `signal`: abandons the check (rejecting with its
 * reason, sealing nothing), so a shutdown need not wait for a full check of the log.
 */
export interface VerifyRevocationsOptions { anchorKey?: Buffer; anchorCopy?: AnchorCopy; signal?: AbortSignal }

/**
 * One sealed anchor as `verifyAll` compared it: `departs` names how the log left what that check verified;
 * `absent`, `otherKey` (sealed under another IDTOKEN key) and `unreadable` were not compared.
 */
export type AnchorCheck = { where: 'database' | 'copy' } & (
  /** `pruned`: the anchored record itself was pruned since, so only the log's length could be compared. */
  | { state: 'checked'; seq: number; pruned?: true }
  | { state: 'departs'; reason: string }
  | { state: 'absent' | 'otherKey' }
  | { state: 'unreadable'; reason: string })

/** The table side of the revocation check and the chain's extent, read in one snapshot. */
export interface RevocationState {
  /** Undefined when the head row is gone. */
  head: ChainHead | undefined
  /** Lowest seq in the log (0 when empty). */
  firstSeq: number
  rows: Revocation[]
  generations: Map<string, number>
  horizons: IssuanceHorizons
}

/** What the last writes told us about the write path. Times are epoch milliseconds. */
export interface WriteHealth {
  /** Set when the write path has stopped for good (the SQLite writer thread died): nothing can commit. */
  stopped?: string
  /** A failed commit with no successful one since (overload does not count: a full queue says nothing about the store). */
  lastFailure?: { at: number; message: string }
  /** The most recent successful commit. */
  lastSuccessAt?: number
}

/** Record types that state revocations: the partial index `audit_revocation_records` covers exactly these. */
export const REVOCATION_RECORD_TYPES = ['token.revoked', 'token.unrevoked', 'audit.checkpoint'] as const

/**
 * SQL condition selecting REVOCATION_RECORD_TYPES. Both SQL backends create the partial index
 * `audit_revocation_records` with this very text, so SQLite can prove the index applies.
 */
export const REVOCATION_RECORDS_WHERE = `type IN (${REVOCATION_RECORD_TYPES.map((t) => `'${t}'`).join(', ')})`

/** Whether a record of this type states revocations (judged on the hashed body's type, never the column alone). */
export function statesRevocations(type: string): boolean {
  return (REVOCATION_RECORD_TYPES as readonly string[]).includes(type)
}

export const MAX_PAGE = 1000

/** Records an anchor lists that one slice of the anchored check re-reads and re-checks before a turn of the event loop. */
const EVIDENCE_SLICE = 500

/**
 * The behaviour every backend shares: encoding and validation off the critical section, group commit,
 * verification and scanning. Backends supply the transaction (`commitBatch`) and the reads.
 */
export abstract class ChainedStore implements BrokerStore {
  abstract readonly backend: 'sqlite' | 'postgres' | 'memory'
  protected readonly committer: Committer<WriteOp>
  /**
   * The audit MAC key (record_mac.ts): every record this store appends carries a MAC under it, and every
   * chain check it runs checks the MACs. Without it (tests, an old writer) records are appended without
   * one, which a keyed check refuses once MACs began.
   */
  protected readonly auditMac: AuditMacKey | undefined
  #lastFailure: { at: number; message: string } | undefined
  #lastSuccessAt: number | undefined

  /**
   * By default writes are grouped here (GroupCommitter) and handed to `commitBatch`; a backend with its own
   * write pipeline (the SQLite writer thread) passes its committer instead.
   */
  constructor(write: { groupCommit?: Partial<GroupCommitOptions>; committer?: Committer<WriteOp>; auditMac?: AuditMacKey } = {}) {
    this.auditMac = write.auditMac
    this.committer = write.committer ?? new GroupCommitter<WriteOp>((ops) => this.commitBatch(ops), write.groupCommit)
  }

  /** Writes all ops in one transaction, extending the chain from the locked head; throws to fail them all. */
  protected abstract commitBatch(ops: WriteOp[]): Promise<void> | void
  /** Raw rows in seq order from `fromSeq`, in bounded chunks. */
  protected abstract scanRows(fromSeq: number): AsyncIterable<StoredRow>
  /** The separately stored chain head (seq 0 and the genesis hash when empty; undefined when its row is gone). */
  protected abstract readHead(): Promise<ChainHead | undefined>
  abstract query(q: AuditQuery): Promise<AuditPage>
  abstract countByTime(q: CountQuery): Promise<CountRow[]>
  abstract countDenialReasons(q: { from: number; to: number }): Promise<ReasonRow[]>
  abstract countLive(q: { now: number; since: number }): Promise<LiveRow[]>
  abstract listRevocations(options?: { activeAt?: number }): Promise<Revocation[]>
  abstract roleGenerations(): Promise<Map<string, number>>
  abstract issuanceHorizon(): Promise<IssuanceHorizons>
  /**
   * Folds the whole log into the issuance horizons again (the upgrade's seed, rerun): a process of an
   * earlier version that wrote records after the upgrade did not raise them. `serve` runs it at start.
   */
  abstract reseedHorizons(): Promise<void>
  abstract readCredential(user: string, provider: string): Promise<StoredCredential | undefined>
  abstract credentialByVaultToken(sha256: string): Promise<StoredCredential | undefined>
  abstract listCredentials(): Promise<StoredCredential[]>
  abstract countLiveCredentials(user: string, except: string): Promise<number>
  abstract readConsoleSession(idSha256: string): Promise<StoredSession | undefined>
  protected abstract closeBackend(): Promise<void>
  /**
   * The chain head, the revocations table and the role generations, read in one snapshot: a revocation
   * committing meanwhile lies beyond the head and its row is not seen, so it cannot look inserted.
   */
  protected abstract readRevocationState(): Promise<RevocationState>
  /** The rows with these seqs (those present). */
  protected abstract readRows(seqs: readonly number[]): Promise<StoredRow[]>
  protected abstract readAnchor(): Promise<string | undefined>
  abstract macsBeganAt(): Promise<number | undefined>
  protected abstract writeAnchor(sealed: string): Promise<void>

  /** The MAC part of every chain check this store runs: its key, when it has one. */
  #macCheck(): MacCheck {
    return this.auditMac ? { key: this.auditMac } : {}
  }

  async verifyRevocations(options: VerifyRevocationsOptions = {}): Promise<RevocationVerification> {
    return (await this.#checkRevocations(options)).revocations
  }

  async verifyAll(options: { anchorKey?: Buffer; anchorCopy?: AnchorCopy } = {}): Promise<{ chain: ChainVerification; revocations: RevocationVerification; anchors?: AnchorCheck[] }> {
    const { anchorKey, anchorCopy } = options
    if (!anchorKey) return this.#checkRevocations({})
    // The anchors before the state, as in #checkOnce: one sealed meanwhile has a head at least that far.
    const unread = (err: unknown): AnchorReading => ({ unreadable: (err as NodeJS.ErrnoException).code ?? (err as Error).message })
    const readings: Array<['database' | 'copy', AnchorReading]> = [['database', await this.readAnchor().then((t) => readSealedAnchor(t, anchorKey), unread)]]
    if (anchorCopy) readings.push(['copy', await anchorCopy.read().then((t) => readSealedAnchor(t, anchorKey), unread)])
    const opened = readings.flatMap(([, r]) => ('anchor' in r ? [r.anchor] : []))
    // Where MACs began as a check saw it: a chain written again without MACs from there on is named too.
    const macFroms = opened.flatMap((a) => (a.macFrom !== undefined ? [a.macFrom] : []))
    const result = await this.#checkRevocations(macFroms.length > 0 ? { macFrom: Math.min(...macFroms) } : {})
    const state = await this.readRevocationState()
    const anchors: AnchorCheck[] = []
    for (const [where, r] of readings) {
      if ('absent' in r) anchors.push({ where, state: 'absent' })
      else if ('otherKey' in r) anchors.push({ where, state: 'otherKey' })
      else if ('unreadable' in r) anchors.push({ where, state: 'unreadable', reason: r.unreadable })
      else {
        const departs = state.head ? await this.#departsFrom([r.anchor], state.head, state.firstSeq) : HEAD_MISSING
        anchors.push(departs !== undefined ? { where, state: 'departs', reason: departs } : { where, state: 'checked', seq: r.anchor.seq, ...(r.anchor.seq < state.firstSeq ? { pruned: true as const } : {}) })
      }
    }
    return { ...result, anchors }
  }

  /**
   * One check, run again when it failed while the log's first seq moved: a prune (retention in this process,
   * whose timer fires with the periodic check's, or another replica's) that commits after the check read the
   * log's extent deletes records it then reads, which looked like records deleted by hand, and refused a
   * start or logged tampering. Bounded: a prefix deleted by hand stays deleted and is named by the next run.
   */
  async #checkRevocations(options: VerifyRevocationsOptions & { macFrom?: number }): Promise<{ chain: ChainVerification; revocations: RevocationVerification }> {
    for (let attempt = 1; ; attempt++) {
      const { firstSeq, ...result } = await this.#checkOnce(options)
      if ((result.chain.ok && result.revocations.ok) || attempt === 3) return result
      if ((await this.readRevocationState()).firstSeq === firstSeq) return result
    }
  }

  async #checkOnce({ anchorKey, anchorCopy, signal, macFrom: knownMacFrom }: VerifyRevocationsOptions & { macFrom?: number }): Promise<{ chain: ChainVerification; revocations: RevocationVerification; firstSeq: number }> {
    // The anchors before the state: an anchor is sealed only once the head reached its seq, so the state read
    // after it has a head at least that far, even when another replica seals one meanwhile.
    const anchor = anchorKey ? openAnchor(await this.readAnchor(), anchorKey) : undefined
    // Unreadable, or sealed under a key since rotated: as if absent (the next successful check replaces it).
    const kept = anchorKey && anchorCopy ? openAnchor(await anchorCopy.read().catch(() => undefined), anchorKey) : undefined
    const state = await this.readRevocationState()
    signal?.throwIfAborted()
    const records: AuditRecord[] = []
    const evidence: Array<[number, string]> = []
    const keep = (row: StoredRow, event: AuditEvent) => {
      records.push({ seq: Number(row.seq), event, prevHash: row.prev_hash, hash: row.hash })
      evidence.push([Number(row.seq), row.hash])
    }
    // Where MACs began as an earlier check saw it: a record after it needs a MAC even when the records
    // that said so are not read again (below the anchor) or were pruned since.
    const anchoredFrom = [anchor?.macFrom, kept?.macFrom, knownMacFrom].filter((n) => n !== undefined)
    const macs = { ...this.#macCheck(), ...(anchoredFrom.length > 0 ? { macFrom: Math.min(...anchoredFrom) } : {}) }
    let verifier = new ChainVerifier(undefined, macs)
    let from = 1
    let unverified = state.head ? await this.#departsFrom([anchor, kept], state.head, state.firstSeq) : undefined
    // A prune since the anchor (the first seq moved up, not past the anchor) need not mean a full check:
    // the records it removed are accounted for by its checkpoint, which must be found below.
    const pruned = anchor !== undefined && state.firstSeq !== anchor.firstSeq
    if (unverified === undefined && anchor && state.head && anchor.firstSeq <= state.firstSeq && state.firstSeq <= anchor.seq + 1) {
      // Records up to the anchor were verified before: only those that stated revocations are read again,
      // by seq (not by their type column, which a retyping would hide), and must be unchanged.
      // In slices with a turn of the event loop between them: the list only grows (every revocation record
      // not yet pruned), and checked at once, 20,000 held requests up for about 290 ms at every run.
      const listed = anchor.evidence.filter(([seq]) => seq >= state.firstSeq)
      for (let i = 0; i < listed.length && unverified === undefined; i += EVIDENCE_SLICE) {
        if (i > 0) await new Promise<void>((r) => setImmediate(r))
        signal?.throwIfAborted()
        const slice = listed.slice(i, i + EVIDENCE_SLICE)
        const rows = new Map((await this.readRows(slice.map(([seq]) => seq))).map((r) => [Number(r.seq), r]))
        for (const [seq, hash] of slice) {
          const row = rows.get(seq)
          const checked = row ? checkRecord(row) : 'record missing'
          if (typeof checked === 'string' || row!.hash !== hash) {
            unverified = `audit chain broken at seq ${seq}, a record that stated revocations when last verified: ${typeof checked === 'string' ? checked : 'hash changed (record replaced)'}`
            break
          }
          if (statesRevocations(checked.type)) keep(row!, checked)
          else { unverified = `audit chain broken at seq ${seq}, a record that stated revocations when last verified: it no longer does`; break }
        }
      }
      verifier = new ChainVerifier({ seq: anchor.seq, hash: anchor.hash }, macs)
      from = anchor.seq + 1
    }
    let chain: ChainVerification | undefined
    if (unverified === undefined) {
      for await (const row of this.scanRows(from)) {
        signal?.throwIfAborted()
        if (state.head && Number(row.seq) > state.head.seq) break
        if (verifier.feed(row)) { if (statesRevocations(row.type)) keep(row, rowToRecord(row).event); continue }
        // Broken: the rest cannot be authenticated, but what it states still helps the operator judge.
        let e: AuditEvent | undefined
        try { e = JSON.parse(row.body) as AuditEvent } catch { /* unreadable: nothing to state */ }
        if (e && statesRevocations(e.type)) records.push(rowToRecord(row))
      }
      chain = verifier.finish(state.head)
      if (!chain.ok) unverified = `audit chain broken at seq ${chain.broken.seq}: ${chain.broken.reason}`
      else if (pruned && from > 1 && !(await this.#prunedBy(records, state.firstSeq))) {
        // Resumed after a prune: the records before the first seq went only if an authenticated checkpoint
        // says so (else they were deleted by hand, and what they stated with them).
        const reason = `records before seq ${state.firstSeq} are missing and no checkpoint vouches for their removal`
        unverified = `audit chain broken at seq ${state.firstSeq}: ${reason}`
        chain = { ok: false, records: chain.records, broken: { seq: state.firstSeq, reason } }
      }
    }
    chain ??= { ok: false, records: 0, broken: { seq: 0, reason: unverified! } }
    let revocations = verifyRevocationEvidence({ records, rows: state.rows, generations: state.generations }, unverified)
    // The horizons a check saw only grow: the floor the anchors carry, kept in every new anchor so a table
    // lowered once is named at every check until it is raised back.
    let horizons = state.horizons
    for (const a of [anchor, kept]) if (a?.horizons) horizons = widerHorizons(horizons, a.horizons)
    const lowered = horizonsLowered(state.horizons, horizons)
    if (lowered.length > 0) {
      revocations = revocations.ok ? { ok: false, revocations: revocations.revocations, differences: lowered } : { ...revocations, differences: [...revocations.differences, ...lowered] }
    }
    signal?.throwIfAborted()
    if (anchorKey && chain.ok) {
      // Best effort: without a fresh anchor the next start-up only checks more records.
      // A log with no MACs yet, checked by a broker holding the key: every record after this head is written
      // with a MAC (this broker's, the CLI's, the other replicas' share the key), so the anchor says so now.
      // Left to the first record, a rewrite of those records before the next check, then a restart, was
      // taken for a log written before MACs.
      const macFrom = verifier.macFrom ?? (this.auditMac ? chain.head.seq + 1 : undefined)
      const sealed = sealAnchor({ seq: chain.head.seq, hash: chain.head.hash, firstSeq: state.firstSeq, evidence, horizons, ...(macFrom !== undefined ? { macFrom } : {}) }, anchorKey)
      await this.writeAnchor(sealed).catch(() => {})
      await anchorCopy?.write(sealed).catch(() => {})
    }
    return { chain, revocations, firstSeq: state.firstSeq }
  }

  /** Whether one of these authenticated records is the checkpoint of the prune that left `firstSeq` first. */
  async #prunedBy(records: readonly AuditRecord[], firstSeq: number): Promise<boolean> {
    const [first] = await this.readRows([firstSeq])
    return first !== undefined && records.some((r) => {
      const d = r.event.type === 'audit.checkpoint' ? r.event.detail as Partial<CheckpointDetail> | undefined : undefined
      return d?.prunedThroughSeq === firstSeq - 1 && d.prunedLastHash === first.prev_hash
    })
  }

  /**
   * Why the log is not the one sealed anchors say an earlier check verified, or undefined. The head only
   * grows, so an anchor past it means verified records are gone: the newest ones cut off and the head set
   * back (a revocation among them undone without a trace inside the chain), or an older copy of the database
   * restored. And a record an anchor names, if not pruned since, still has the hash it had: otherwise the
   * chain was rewritten below it with every hash recomputed (or this is another database). Checked in full,
   * such a chain is whole, and a new anchor would be sealed over it.
   */
  async #departsFrom(anchors: Array<ChainAnchor | undefined>, head: ChainHead, firstSeq: number): Promise<string | undefined> {
    for (const a of anchors) {
      if (a && a.seq > head.seq) {
        return `the audit log ends at seq ${head.seq}, but an earlier check verified it up to seq ${a.seq} (records cut off the end, or an older copy of the database restored: if on purpose, delete both anchors as docs/audit.md says)`
      }
    }
    for (const a of anchors) {
      if (!a || a.seq === 0 || a.seq < firstSeq) continue
      const [row] = await this.readRows([a.seq])
      if (row?.hash !== a.hash) {
        return `record seq ${a.seq} is not the record an earlier check verified (its hash changed: records rewritten with their hashes recomputed, or another database)`
      }
    }
    return undefined
  }

  record(event: AuditEvent): Promise<void> {
    // Validate and serialise before queueing: a bad event fails alone instead of failing the batch it
    // would join. Only plain JSON is queued; the canonical form (sorted keys) and the columns are derived
    // from it inside the commit, for SQLite in its writer thread, off the event loop (eventRow).
    assertStorableEvent(event)
    return this.#submit({ kind: 'event', json: JSON.stringify(event) })
  }

  #readOnly = false

  /**
   * Makes every later write fail: for a command that opened the store to read without the audit MAC key,
   * so that no path it takes (a flag it ignored, a write added later) can append a record without a MAC.
   */
  refuseWrites(): void {
    this.#readOnly = true
  }

  /** Submits and notes the outcome, so readiness can tell that commits fail before anyone asks. */
  #submit(op: WriteOp): Promise<void> {
    if (this.#readOnly) return Promise.reject(new OperatorError('EAUDITMACKEY', 'this command opened the audit log only to read it (without the audit MAC key) and appends nothing to it'))
    // Settled in commit order, so a success here is later than any failure noted before: it clears it.
    return this.committer.submit(op).then(() => { this.#lastSuccessAt = Date.now(); this.#lastFailure = undefined }, (err: unknown) => {
      if (!(err instanceof StoreOverloaded)) this.#lastFailure = { at: Date.now(), message: err instanceof Error ? err.message : String(err) }
      // An outage (database unreachable, locked, full; the writer thread gone) becomes 503
      // temporarily_unavailable so that clients retry; anything else (a bug) stays as it is, a 500.
      // Either way the write failed and the caller hands out nothing.
      throw asStoreOutage(err)
    })
  }

  writeHealth(): WriteHealth {
    const stopped = this.committer.stopped?.()
    return {
      ...(stopped !== undefined ? { stopped } : {}),
      ...(this.#lastFailure ? { lastFailure: { ...this.#lastFailure } } : {}),
      ...(this.#lastSuccessAt !== undefined ? { lastSuccessAt: this.#lastSuccessAt } : {}),
    }
  }

  async revoke(rev: NewRevocation, event: AuditEvent): Promise<Revocation> {
    assertStorableEvent(event)
    const op: WriteOp = { kind: 'revoke', rev, event: { ...event } }
    await this.#submit(op)
    return op.result!
  }

  async redeemPilotSlot(credential: string, limit: number, issued: AuditEvent, refused: AuditEvent): Promise<RedemptionOutcome> {
    assertStorableEvent(issued)
    assertStorableEvent(refused)
    if (!Number.isSafeInteger(limit) || limit < 1) throw new TypeError('a redemption limit is a positive integer')
    const op: RedeemOp = { kind: 'redeem', credential, limit, json: JSON.stringify(issued), denyJson: JSON.stringify(refused) }
    await this.#submit(op)
    return op.result!
  }

  async renewPilotToken(renewal: PilotRenewal, renewed: AuditEvent, refused: AuditEvent, stale: AuditEvent): Promise<RenewalOutcome> {
    assertStorableEvent(renewed)
    assertStorableEvent(refused)
    assertStorableEvent(stale)
    if (typeof renewed.jti !== 'string') throw new TypeError('a renewal record names the new token\'s jti')
    const op: RenewOp = {
      kind: 'renew', replaces: renewal.replaces, expires: renewal.expires,
      successor: renewed.jti, time: renewed.time, json: JSON.stringify(renewed), denyJson: JSON.stringify(refused), staleJson: JSON.stringify(stale),
    }
    await this.#submit(op)
    return op.result!
  }

  async writeCredential(write: CredentialWrite, event: AuditEvent): Promise<boolean> {
    assertStorableEvent(event)
    const op: WriteOp = { kind: 'credential', write, json: JSON.stringify(event) }
    await this.#submit(op)
    return op.result === true
  }

  async confirmCredential(confirm: CredentialConfirmation): Promise<boolean> {
    const op: WriteOp = { kind: 'confirm', confirm }
    await this.#submit(op)
    return op.result === true
  }

  async writeConsoleSession(write: SessionWrite): Promise<void> {
    await this.#submit({ kind: 'session', write })
  }

  async lift(lift: RevocationLift, event: AuditEvent): Promise<Revocation | undefined> {
    assertStorableEvent(event)
    const op: WriteOp = { kind: 'lift', lift, json: JSON.stringify(event) }
    await this.#submit(op)
    return op.result ?? undefined
  }

  async prune(before: number, now: number, { signal }: { signal?: AbortSignal } = {}): Promise<PruneResult> {
    const range = await this.#vouchedPrefix(before, signal)
    if (!range) return { pruned: 0 }
    // The last moment to abandon it: once submitted, the delete and its checkpoint commit together.
    signal?.throwIfAborted()
    const op: WriteOp = { kind: 'prune', before, now, range }
    await this.#submit(op)
    if (op.result === PRUNE_RANGE_CHANGED) throw new OperatorError('EAUDITCHAIN', PRUNE_RANGE_CHANGED)
    return op.result!
  }

  /**
   * The records a prune at `before` deletes (every one before the first with `time >= before`), once the
   * chain vouches for them: each intact, linked to the next, the first at the genesis hash or behind a
   * checkpoint. Deleting records it does not vouch for would destroy the evidence of their tampering, and
   * the new checkpoint would vouch for the remaining chain (and carry the revocations the edited bodies
   * state, not the ones the broker wrote). Undefined when nothing is old enough; throws naming the first problem.
   */
  async #vouchedPrefix(before: number, signal: AbortSignal | undefined): Promise<PruneRange | undefined> {
    const head = await this.readHead()
    if (!head) throw new OperatorError('EAUDITCHAIN', `${HEAD_MISSING}; not pruning (run "audit verify")`)
    const v = new ChainVerifier(undefined, this.#macCheck())
    let first: StoredRow | undefined
    let last: StoredRow | undefined
    for await (const row of this.scanRows(1)) {
      signal?.throwIfAborted()
      if (Number(row.seq) > head.seq) break
      first ??= row
      const pruned = Number(row.time) < before
      if (pruned) last = row
      // The first record kept is fed too: it must link to the last one pruned.
      if (!v.feed(row) || !pruned) break
      // Intact (its type column is its body's), but stating a revocation or lift nobody could have written:
      // pruned, it would be gone and the checkpoint would carry nothing of it, so `audit verify` went green.
      const malformed = statesRevocations(row.type) ? malformedRevocationRecord(Number(row.seq), rowToRecord(row).event) : undefined
      if (malformed !== undefined) throw new OperatorError('EAUDITCHAIN', `${malformed}; not pruning (run "audit verify")`)
    }
    if (!first || !last) return undefined
    const refuse = (b: { seq: number; reason: string }) => new OperatorError('EAUDITCHAIN', `audit chain broken at seq ${b.seq}: ${b.reason}; not pruning (run "audit verify")`)
    if ((v.broken || !v.anchored) && (await this.readRevocationState()).firstSeq > Number(first.seq)) {
      // Another replica's prune committed while this one read the range in chunks: the gap is its delete
      // (the first record read is gone too), not a record deleted by hand; the next run checks afresh.
      return undefined
    }
    if (v.broken) throw refuse(v.broken)
    if (!v.anchored && !(await this.#checkpointVouchesFor(first, v.macFrom, signal))) {
      throw refuse({ seq: Number(first.seq), reason: `records before seq ${first.seq} are missing and no checkpoint vouches for their removal` })
    }
    return { first: Number(first.seq), through: Number(last.seq), hash: last.hash }
  }

  /**
   * Whether an intact checkpoint record states that retention removed the records before `first`. From
   * where MACs began only one the broker wrote counts: with its MAC, and with this store's key a MAC that
   * verifies. The records read before (`macFrom`) may all predate MACs while the checkpoint does not, so the
   * start is also taken from the log: the statements opening MACs and the checkpoints carrying it on, each
   * believed only with a MAC that verifies under this store's key.
   */
  async #checkpointVouchesFor(first: StoredRow, macFrom: number | undefined, signal: AbortSignal | undefined): Promise<boolean> {
    let from = macFrom
    // The intact checkpoints that name `first`, as read here: judged by their MAC once `from` is known.
    const candidates: StoredRow[] = []
    for (const type of [MACS_STARTED, 'audit.checkpoint'] as const) {
      let cursor: string | undefined
      // Bounded: each page moves the cursor back; there is one statement per MAC era and one checkpoint per prune.
      for (;;) {
        signal?.throwIfAborted()
        const page = await this.query({ type, limit: MAX_PAGE, ...(cursor !== undefined ? { cursor } : {}) })
        const rows = new Map((await this.readRows(page.records.map((r) => r.seq))).map((r) => [Number(r.seq), r]))
        for (const r of page.records) {
          const row = rows.get(r.seq)
          if (!row || typeof checkRecord(row) === 'string') continue
          const stated = statedMacFrom(r.event)
          const keyed = this.auditMac !== undefined && typeof row.mac === 'string' && macProblem(this.auditMac, row.hash, row.mac) === undefined
          if (stated !== undefined && stated <= r.seq && keyed) from = Math.min(from ?? stated, stated)
          const d = r.event.detail as Partial<CheckpointDetail> | undefined
          if (type === 'audit.checkpoint' && d?.prunedThroughSeq === Number(first.seq) - 1 && d.prunedLastHash === first.prev_hash) candidates.push(row)
        }
        if (page.nextCursor === undefined) break
        cursor = page.nextCursor
      }
    }
    return candidates.some((row) => macVouches(row, this.auditMac, from))
  }

  /** Group-commit counters (committed batches and records), for benchmarks and metrics. */
  commitStats(): CommitStats {
    return this.committer.stats()
  }

  observeBatches(listener: (items: number) => void): void {
    this.committer.onBatch = listener
  }

  macVerdict(row: StoredRow, previous: StoredRow | undefined): MacVerdict {
    return judgeRecordMac(row, previous, this.auditMac)
  }

  async verify(): Promise<ChainVerification> {
    // Head first: records committed while we scan (a live broker) lie beyond it and are not judged.
    const head = await this.readHead()
    const v = new ChainVerifier(undefined, this.#macCheck())
    for await (const row of this.scanRows(1)) {
      if ((head && Number(row.seq) > head.seq) || !v.feed(row)) break
    }
    return v.finish(head)
  }

  async *scan(fromSeq = 1): AsyncIterable<AuditRecord> {
    for await (const row of this.scanRows(fromSeq)) yield rowToRecord(row)
  }

  async *scanStored(fromSeq = 1): AsyncIterable<StoredRow> {
    yield* this.scanRows(fromSeq)
  }

  async close(): Promise<void> {
    await this.committer.close()
    await this.closeBackend()
  }
}

/** Whether a row's MAC lets it count as the broker's, as a ChainVerifier would judge it (see chain.ts). */
function macVouches(row: StoredRow, key: AuditMacKey | undefined, macFrom: number | undefined): boolean {
  if (typeof row.mac !== 'string' || row.mac === '') return macFrom === undefined || Number(row.seq) < macFrom
  return key === undefined || macProblem(key, row.hash, row.mac) === undefined
}

function widerHorizons(a: IssuanceHorizons, b: IssuanceHorizons): IssuanceHorizons {
  const wider = (x: IssuanceHorizon, y: IssuanceHorizon) => ({ exp: Math.max(x.exp, y.exp), lifetime: Math.max(x.lifetime, y.lifetime) })
  return { token: wider(a.token, b.token), certificate: wider(a.certificate, b.certificate) }
}

/** A difference for each horizon value the table holds below what an earlier check saw. */
function horizonsLowered(table: IssuanceHorizons, seen: IssuanceHorizons): string[] {
  const out: string[] = []
  for (const kind of ['token', 'certificate'] as const) {
    for (const field of ['exp', 'lifetime'] as const) {
      if (table[kind][field] < seen[kind][field]) {
        const what = field === 'exp' ? 'ends at' : 'has a longest lifetime of'
        out.push(`the ${kind} issuance horizon ${what} ${table[kind][field]} in the table, but it reached ${seen[kind][field]} when last checked (lowered by hand: later revocations would end too early)`)
      }
    }
  }
  return out
}

/** The row for one op at `seq`, linked to `prevHash`, with its MAC under `mac` (null without a key). */
export function chainRow(seq: number, prevHash: string, body: string, cols: AuditColumns, mac?: AuditMacKey): StoredRow {
  const hash = recordHash(seq, prevHash, body)
  return { ...cols, seq, body, prev_hash: prevHash, hash, mac: mac ? recordMac(mac, hash) : null }
}

/**
 * The record that opens the MAC era, appended (with its MAC) before the first record a keyed writer adds
 * to a log that has none: it states its own seq, so a check knows from where a record without a MAC was
 * not written by the broker. It is in the hashed body, so removing or moving it means re-hashing every
 * later record, whose MACs then fail.
 */
export function macsStartedBody(seq: number, now: number, mac: AuditMacKey): { body: string; cols: AuditColumns } {
  const e: AuditEvent = { type: MACS_STARTED, time: now, caller: { sub: 'audit' }, detail: { macFrom: seq, keyId: mac.kid } }
  return { body: encodeEventBody(e), cols: columnsOf(e) }
}

/**
 * The MAC era's start for a keyed writer's transaction: `found` (foundMacFrom), else the era opens here, with
 * its statement appended first at `nextSeq`, before the transaction's own records.
 */
export function openedMacEra(found: number | undefined, nextSeq: number, mac: AuditMacKey, append: (body: string, cols: AuditColumns) => void): number {
  if (found !== undefined) return found
  const { body, cols } = macsStartedBody(nextSeq, Math.floor(Date.now() / 1000), mac)
  append(body, cols)
  return nextSeq
}

/** SQL selecting the seq of the record that opened the MAC era (both SQL backends index it: schema step of MACs). */
export const MACS_STARTED_SQL = `SELECT min(seq) AS seq FROM audit_log WHERE type = '${MACS_STARTED}'`

/** SQL selecting the newest checkpoint's body, which carries the MAC era's start once retention removed its record. */
export const LAST_CHECKPOINT_SQL = `SELECT body FROM audit_log WHERE ${REVOCATION_RECORDS_WHERE} AND type = 'audit.checkpoint' ORDER BY seq DESC LIMIT 1`

/** The MAC era's start a writer finds: the record that opened it, else what the newest checkpoint carries. */
export function foundMacFrom(startedSeq: number | string | null | undefined, lastCheckpointBody: string | undefined): number | undefined {
  if (startedSeq !== null && startedSeq !== undefined) return Number(startedSeq)
  if (lastCheckpointBody === undefined) return undefined
  // A body edited into nonsense must not stop every write: the writer then opens the era again, and the
  // checks name the edited record.
  let from: unknown
  try { from = (JSON.parse(lastCheckpointBody) as { detail?: { macFrom?: unknown } }).detail?.macFrom } catch { return undefined }
  return macFromValue(from)
}

/**
 * The canonical body and indexed columns of a queued event. A JSON round trip of a plain-data AuditEvent
 * is lossless, so the body is byte for byte what encodeEventBody(event) gives on the submitting thread.
 */
export function eventRow(json: string): { body: string; cols: AuditColumns } {
  const e = JSON.parse(json) as AuditEvent
  return { body: encodeEventBody(e), cols: columnsOf(e) }
}

/**
 * Completes a revocation's audit event with the row exactly as stored (id and generation decided by the
 * transaction): the chain, not the table, is the authority on revocations (revocation_consistency.ts).
 */
export function revocationEventBody(event: AuditEvent, rev: Revocation): { body: string; cols: AuditColumns } {
  const revocation = {
    id: rev.id, kind: rev.kind, value: rev.value, revokedAt: rev.revokedAt, until: rev.until,
    ...(rev.iss !== undefined ? { iss: rev.iss } : {}),
    ...(rev.gen !== undefined ? { gen: rev.gen } : {}),
    ...(rev.reason !== undefined ? { reason: rev.reason } : {}),
    ...(rev.revokedBy !== undefined ? { revokedBy: rev.revokedBy } : {}),
  }
  const e: AuditEvent = { ...event, detail: { ...event.detail, revocation } }
  return { body: encodeEventBody(e), cols: columnsOf(e) }
}

/**
 * The checkpoint record appended when retention removes records 1..throughSeq. It carries the revocations
 * the removed records stated (revocationsToCarry), so the chain keeps vouching for every row of the table.
 */
export function checkpointEventBody(detail: CheckpointDetail, carried: CarriedRevocations, now: number): { body: string; cols: AuditColumns } {
  const lifts = carried.lifts.length > 0 ? { lifts: carried.lifts } : {}
  const e: AuditEvent = { type: 'audit.checkpoint', time: now, caller: { sub: 'retention' }, detail: { ...detail, revocations: carried.revocations, ...lifts } }
  return { body: encodeEventBody(e), cols: columnsOf(e) }
}

/** A page from up to limit + 1 rows, newest first: the extra row only says that a next page exists. */
export function toPage(rows: StoredRow[], limit: number): AuditPage {
  const page = rows.slice(0, limit)
  const last = page.at(-1)
  return { records: page.map(rowToRecord), ...(rows.length > limit && last ? { nextCursor: encodeCursor(last.time, last.seq) } : {}) }
}

/** Keyset cursor over (time, seq) descending; opaque to callers. */
export function encodeCursor(time: number, seq: number): string {
  return Buffer.from(`${time}:${seq}`).toString('base64url')
}

export function decodeCursor(cursor: string): { time: number; seq: number } {
  const m = /^(\d{1,15}):(\d{1,15})$/.exec(Buffer.from(cursor, 'base64url').toString('latin1'))
  if (!m) throw new InvalidRequest('cursor is not valid')
  return { time: Number(m[1]), seq: Number(m[2]) }
}

/** A `revocations` row as either SQL backend returns it (PostgreSQL BIGINTs may come back as strings). */
export interface RevocationRow {
  id: number | string
  kind: Revocation['kind']
  value: string
  revoked_at: number | string
  until: number | string
  gen: number | string | null
  reason: string | null
  revoked_by: string | null
  iss: string | null
  lifted_at: number | string | null
  lifted_by: string | null
}

export function fromRevocationRow(r: RevocationRow): Revocation {
  return {
    id: Number(r.id), kind: r.kind, value: r.value, revokedAt: Number(r.revoked_at), until: Number(r.until),
    ...(r.gen !== null ? { gen: Number(r.gen) } : {}),
    ...(r.reason !== null ? { reason: r.reason } : {}),
    ...(r.revoked_by !== null ? { revokedBy: r.revoked_by } : {}),
    ...(r.iss !== null ? { iss: r.iss } : {}),
    ...(r.lifted_at !== null ? { liftedAt: Number(r.lifted_at) } : {}),
    ...(r.lifted_by !== null ? { liftedBy: r.lifted_by } : {}),
  }
}

/**
 * Schema step for lifts and issuer-bound revocations, shared by both SQL backends: the partial index is
 * rebuilt over REVOCATION_RECORDS_WHERE, which now includes `token.unrevoked`.
 */
export const LIFT_AND_ISS_MIGRATION = `ALTER TABLE revocations ADD COLUMN iss TEXT;
   ALTER TABLE revocations ADD COLUMN lifted_at BIGINT;
   ALTER TABLE revocations ADD COLUMN lifted_by TEXT;
   DROP INDEX IF EXISTS audit_revocation_records;
   CREATE INDEX audit_revocation_records ON audit_log (seq) WHERE ${REVOCATION_RECORDS_WHERE};`

/** Equality filters as (column, value) pairs, shared by the SQL backends. */
export function equalityFilters(q: AuditQuery): Array<[keyof AuditColumns, string]> {
  const out: Array<[keyof AuditColumns, string]> = []
  if (q.caller !== undefined) out.push(['caller_sub', q.caller])
  if (q.issuedSub !== undefined) out.push(['issued_sub', q.issuedSub])
  if (q.role !== undefined) out.push(['role', q.role])
  if (q.jti !== undefined) out.push(['jti', q.jti])
  if (q.decision !== undefined) out.push(['decision', q.decision])
  if (q.type !== undefined) out.push(['type', q.type])
  if (q.site !== undefined) out.push(['site', q.site])
  if (q.requestId !== undefined) out.push(['request_id', q.requestId])
  return out
}

export function assertPageSize(limit: number): void {
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_PAGE) throw new InvalidRequest(`limit must be 1 to ${MAX_PAGE}`)
}
