import type { AuditEvent, AuditPage, AuditQuery, AuditRecord, AuditStore, ChainVerification, PruneResult } from '../audit/audit_log.ts'
import type { AuditAggregates, CountQuery, CountRow, LiveRow, ReasonRow } from '../audit/aggregate.ts'
import type { AnchorCopy } from '../audit/anchor.ts'
import { assertStorableEvent, ChainVerifier, type ChainHead, judgeRecordMac, type MacVerdict, rowToRecord, type StoredRow } from '../audit/chain.ts'
import type { AuditMacKey } from '../audit/record_mac.ts'
import { OperatorError } from '../errors.ts'
import type { CredentialConfirmation, CredentialStore, CredentialWrite, StoredCredential } from '../credentials/credential_store.ts'
import type { ConsoleSessionStore, SessionWrite, StoredSession } from '../console/session_store.ts'
import type { IssuanceHorizons, NewRevocation, Revocation, RevocationLift, RevocationStore } from '../revocation/revocation.ts'
import { GroupCommitter, StoreOverloaded, type CommitStats, type Committer, type GroupCommitOptions } from './group_commit.ts'
import type { PilotRenewal, RenewalOutcome, RenewalRefusal, RenewalRefusalReasons, RenewOp } from './pilot_renewals.ts'
import type { RevocationVerification } from '../revocation/revocation_consistency.ts'
import { macCheck, type ChainSource, type RevocationState } from './chain_source.ts'
import type { RedeemOp, RedemptionOutcome } from './pilot_redemptions.ts'
import { changedAfterChunks, PRUNE_CHUNK, PRUNE_RANGE_CHANGED, vouchedPrefix } from './prune_range.ts'
import { checkRevocations, MAX_ATTEMPTS, type VerifyRevocationsOptions } from './revocation_check.ts'
import { verifyAllAgainstAnchors, type AnchorCheck } from './verify_all.ts'
import type { WriteOp } from './write_ops.ts'
import { asStoreOutage, StoreClosed } from './store_outage.ts'

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
   * Calls `listener` once if the write path stops for good while the store is open (`writeHealth().stopped`:
   * the SQLite writer thread died), at once if it has already; replaces any earlier one. Nothing short of a
   * new process brings such a write path back, so `serve` exits on it for its supervisor to restart it. A
   * PostgreSQL pool has no such state: an unreachable server is an outage it recovers from.
   */
  onWritePathStopped(listener: (reason: string) => void): void
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
   * then records `refused` with `reasons.reused`, completed with the reused jti and its successor
   * (pilot_renewals.ts), or with `reasons.stale`, so completed, when this attempt was minted before that
   * successor was. The judgement and the record commit together, under the lock every replica's writes take.
   */
  renewPilotToken(renewal: PilotRenewal, renewed: AuditEvent, refused: RenewalRefusal, reasons: RenewalRefusalReasons): Promise<RenewalOutcome>
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
  /** The most records one prune transaction deletes (PRUNE_CHUNK; tests cut small logs with less). */
  protected readonly pruneChunk: number = PRUNE_CHUNK
  /** This store's reads and key, for the checks kept in files of their own (chain_source.ts). */
  readonly #source: ChainSource
  #lastFailure: { at: number; message: string } | undefined
  #lastSuccessAt: number | undefined

  /**
   * By default writes are grouped here (GroupCommitter) and handed to `commitBatch`; a backend with its own
   * write pipeline (the SQLite writer thread) passes its committer instead.
   */
  constructor(write: { groupCommit?: Partial<GroupCommitOptions<WriteOp>>; committer?: Committer<WriteOp>; auditMac?: AuditMacKey } = {}) {
    this.auditMac = write.auditMac
    this.committer = write.committer ?? new GroupCommitter<WriteOp>((ops) => this.commitBatch(ops), write.groupCommit)
    // Each read goes through `this`, so a backend's (or a test's) override is the one the checks call.
    this.#source = {
      auditMac: this.auditMac,
      readHead: () => this.readHead(),
      scanRows: (fromSeq) => this.scanRows(fromSeq),
      readRows: (seqs) => this.readRows(seqs),
      readRevocationState: () => this.readRevocationState(),
      readAnchor: () => this.readAnchor(),
      writeAnchor: (sealed) => this.writeAnchor(sealed),
      query: (q) => this.query(q),
    }
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

  async verifyRevocations(options: VerifyRevocationsOptions = {}): Promise<RevocationVerification> {
    return (await checkRevocations(this.#source, options)).revocations
  }

  async verifyAll(options: { anchorKey?: Buffer; anchorCopy?: AnchorCopy } = {}): Promise<{ chain: ChainVerification; revocations: RevocationVerification; anchors?: AnchorCheck[] }> {
    return verifyAllAgainstAnchors(this.#source, options)
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

  async renewPilotToken(renewal: PilotRenewal, renewed: AuditEvent, refused: RenewalRefusal, reasons: RenewalRefusalReasons): Promise<RenewalOutcome> {
    assertStorableEvent(renewed)
    assertStorableEvent(refused)
    if (typeof renewed.jti !== 'string') throw new TypeError('a renewal record names the new token\'s jti')
    // The refusal's reason is the one of the refusal the transaction decides on; one given here would hide it.
    if ((refused as AuditEvent).reason !== undefined) throw new TypeError('a renewal\'s refusal gets its reason from the store')
    const op: RenewOp = {
      kind: 'renew', replaces: renewal.replaces, expires: renewal.expires,
      successor: renewed.jti, time: renewed.time, json: JSON.stringify(renewed),
      refusalJson: JSON.stringify(refused), reusedReason: reasons.reused, staleReason: reasons.stale,
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

  /**
   * Deletes the vouched prefix a chunk at a time (PRUNE_CHUNK), each chunk a transaction of its own that
   * appends its checkpoint, so the chain verifies after each one and requests' records commit between them.
   * `signal` abandons the prune before a chunk is submitted: the chunks already committed stay, each a whole
   * prune. A chunk that finds the prefix pruned meanwhile (another replica) ends the run.
   */
  async prune(before: number, now: number, { signal }: { signal?: AbortSignal } = {}): Promise<PruneResult> {
    const ranges = await vouchedPrefix(this.#source, before, signal, this.pruneChunk)
    if (!ranges) return { pruned: 0 }
    let done: PruneResult = { pruned: 0 }
    let chunks = 0
    for (const [i, range] of ranges.entries()) {
      // Nothing deleted yet: abandoned as before, by throwing. Else the chunks committed are the result.
      if (signal?.aborted) { if (done.pruned === 0) signal.throwIfAborted(); break }
      // Once submitted, the chunk's delete and its checkpoint commit together. The first chunk also drops
      // the ended pilots' renewal rows: once per prune is enough.
      const op: WriteOp = { kind: 'prune', before, now, range, renewals: i === 0 }
      await this.#submit(op)
      if (op.result === PRUNE_RANGE_CHANGED) throw new OperatorError('EAUDITCHAIN', done.pruned === 0 ? PRUNE_RANGE_CHANGED : changedAfterChunks(done, chunks))
      if (op.result!.pruned === 0) break
      chunks++
      done = { pruned: done.pruned + op.result!.pruned, checkpointSeq: op.result!.checkpointSeq!, ...(chunks > 1 ? { chunks } : {}) }
    }
    return done
  }
  /** Group-commit counters (committed batches and records), for benchmarks and metrics. */
  commitStats(): CommitStats {
    return this.committer.stats()
  }

  observeBatches(listener: (items: number) => void): void {
    this.committer.onBatch = listener
  }

  onWritePathStopped(listener: (reason: string) => void): void {
    // Once: a death in the same turn as this call would otherwise be heard both from the committer and here.
    let heard = false
    const once = (reason: string) => { if (!heard) { heard = true; listener(reason) } }
    this.committer.onStopped = once
    const stopped = this.committer.stopped?.()
    if (stopped !== undefined) queueMicrotask(() => once(stopped))
  }

  macVerdict(row: StoredRow, previous: StoredRow | undefined): MacVerdict {
    return judgeRecordMac(row, previous, this.auditMac)
  }

  /**
   * Run again, as checkRevocations is, while the log's first seq keeps moving up under it: a prune chunk that
   * commits after the head was read deletes the records the scan starts with, and the checkpoint vouching for
   * the new first record lies past that head, so one run saw a prefix deleted by hand (the console's chain
   * status showed it broken until its next run). A prefix deleted by hand does not move again.
   */
  async verify(): Promise<ChainVerification> {
    for (let attempt = 1; ; attempt++) {
      const first = (await this.readRevocationState()).firstSeq
      const result = await this.#verifyOnce()
      if (result.ok || attempt === MAX_ATTEMPTS) return result
      if ((await this.readRevocationState()).firstSeq <= first) return result
    }
  }

  async #verifyOnce(): Promise<ChainVerification> {
    // Head first: records committed while we scan (a live broker) lie beyond it and are not judged.
    const head = await this.readHead()
    const v = new ChainVerifier(undefined, macCheck(this.#source))
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

  #closing: Promise<void> | undefined
  #backendClosing = false

  /**
   * Set once the writes have drained and the backend is closing: a read from then on is refused as an
   * outage (StoreClosed) instead of failing on a closed connection or pool as if the broker were broken.
   */
  protected get closed(): boolean {
    return this.#backendClosing
  }

  /** The refusal of a read once the store has closed (an outage: the broker is stopping). */
  protected closedRead(): Error {
    return asStoreOutage(new StoreClosed(), 'read') as Error
  }

  /** Drains the writes, then closes the backend; a second call (a stop that raced another) waits for the first. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.committer.close()
      this.#backendClosing = true
      await this.closeBackend()
    })()
    return this.#closing
  }
}
