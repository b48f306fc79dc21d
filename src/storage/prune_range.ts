import { ChainVerifier, checkRecord, HEAD_MISSING, rowToRecord, statedMacFrom, type CheckpointDetail, type StoredRow } from '../audit/chain.ts'
import { macProblem, MACS_STARTED } from '../audit/record_mac.ts'
import { OperatorError } from '../errors.ts'
import { malformedRevocationRecord } from '../revocation/revocation_consistency.ts'
import { MAX_PAGE } from './audit_pages.ts'
import { macCheck, type ChainSource } from './chain_source.ts'
import { LoopTurns } from './loop_turns.ts'
import { macVouches } from './mac_era.ts'
import { statesRevocations } from './revocation_rows.ts'

/**
 * The records one prune deletes, checked before the transaction: first..through, and the hash of `through`.
 * The transaction refuses when the log no longer starts at `first` or `through` no longer has that hash.
 */
export interface PruneRange {
  first: number
  through: number
  hash: string
  /**
   * The records of the range that state revocations or lifts, as the check read them: [seq, hash], in seq
   * order. The transaction carries what they state into its checkpoint, so it re-reads them and refuses
   * unless they are these, still intact (stateChanged): the check may have read them minutes before.
   */
  stating: Array<[number, string]>
}

/**
 * The most records one prune transaction deletes. The first prune after `audit.retention_days` is turned on
 * may cover millions of records; deleted in one transaction, it held the chain head (PostgreSQL: its row
 * lock, every replica's writes; SQLite: the one writer) for as long as that took, and requests' records
 * waited behind it. In chunks of this size each transaction takes tens of milliseconds and records commit
 * between them (docs/audit.md, "Retention").
 */
export const PRUNE_CHUNK = 5_000

/**
 * A prune's transaction found the log changed between the check and the delete. It refuses as a result, not
 * by throwing, which would fail the other records of its batch.
 */
export const PRUNE_RANGE_CHANGED = 'the audit log changed while retention checked it; not pruning (run "audit verify")'

/**
 * PRUNE_RANGE_CHANGED for a chunk after earlier chunks of the same prune committed: those records are gone
 * (each chunk a whole prune with its checkpoint), so "not pruning" would tell the admin reading it that
 * nothing was deleted.
 */
export function changedAfterChunks(done: { pruned: number; checkpointSeq?: number }, chunks: number): string {
  return `the audit log changed while retention checked it; pruned ${done.pruned} records (${chunks} chunk${chunks === 1 ? '' : 's'}, the last checkpoint is record ${done.checkpointSeq}) before that and no further (run "audit verify")`
}

/**
 * Whether the records stating revocations that a chunk's transaction reads in its range (by the type column,
 * in seq order) are not the ones the check read: another set, another hash, or a row that no longer verifies
 * (a body edited without its hash, a column retyped). The checkpoint carries what these rows state and the
 * broker MACs it, so an edit made between the check and the chunk would be deleted and what it states
 * vouched for; the transaction refuses instead, leaving the record for "audit verify" to name.
 */
export function stateChanged(range: PruneRange, rows: readonly StoredRow[]): boolean {
  if (rows.length !== range.stating.length) return true
  return rows.some((row, i) => Number(row.seq) !== range.stating[i]![0] || row.hash !== range.stating[i]![1] || typeof checkRecord(row) === 'string')
}

/**
 * The records a prune at `before` deletes (every one before the first with `time >= before`), once the
 * chain vouches for them: each intact, linked to the next, the first at the genesis hash or behind a
 * checkpoint. Deleting records it does not vouch for would destroy the evidence of their tampering, and
 * the new checkpoint would vouch for the remaining chain (and carry the revocations the edited bodies
 * state, not the ones the broker wrote). Cut into consecutive ranges of at most `chunk` records, oldest
 * first, each deleted by a transaction of its own. Undefined when nothing is old enough; throws naming the
 * first problem.
 */
export async function vouchedPrefix(source: ChainSource, before: number, signal: AbortSignal | undefined, chunk = PRUNE_CHUNK): Promise<PruneRange[] | undefined> {
  const head = await source.readHead()
  if (!head) throw new OperatorError('EAUDITCHAIN', `${HEAD_MISSING}; not pruning (run "audit verify")`)
  const v = new ChainVerifier(undefined, macCheck(source))
  let first: StoredRow | undefined
  let last: StoredRow | undefined
  // The ranges cut so far; `chunkFirst` opens the one being read. Only their ends are kept, not the rows.
  const ranges: PruneRange[] = []
  let chunkFirst = 0
  let stating: Array<[number, string]> = []
  // Run while serving (retention's timer), over millions of records at the first prune: a turn every
  // CHECK_SLICE_MS of verification, whatever the backend's paging (loop_turns.ts).
  const turns = new LoopTurns()
  for await (const row of source.scanRows(1)) {
    if (turns.due()) await turns.turn()
    signal?.throwIfAborted()
    if (Number(row.seq) > head.seq) break
    if (!first) { first = row; chunkFirst = Number(row.seq) }
    const pruned = Number(row.time) < before
    if (pruned) {
      last = row
      // By the column: the row is fed below, which refuses a column that is not its body's.
      if (statesRevocations(row.type)) stating.push([Number(row.seq), row.hash])
      if (Number(row.seq) - chunkFirst + 1 >= chunk) {
        ranges.push({ first: chunkFirst, through: Number(row.seq), hash: row.hash, stating })
        chunkFirst = Number(row.seq) + 1
        stating = []
      }
    }
    // The first record kept is fed too: it must link to the last one pruned.
    if (!v.feed(row) || !pruned) break
    // Intact (its type column is its body's), but stating a revocation or lift nobody could have written:
    // pruned, it would be gone and the checkpoint would carry nothing of it, so `audit verify` went green.
    const malformed = statesRevocations(row.type) ? malformedRevocationRecord(Number(row.seq), rowToRecord(row).event) : undefined
    if (malformed !== undefined) throw new OperatorError('EAUDITCHAIN', `${malformed}; not pruning (run "audit verify")`)
  }
  if (!first || !last) return undefined
  const refuse = (b: { seq: number; reason: string }) => new OperatorError('EAUDITCHAIN', `audit chain broken at seq ${b.seq}: ${b.reason}; not pruning (run "audit verify")`)
  if ((v.broken || !v.anchored) && (await source.readRevocationState()).firstSeq > Number(first.seq)) {
    // Another replica's prune committed while this one read the range in chunks: the gap is its delete
    // (the first record read is gone too), not a record deleted by hand; the next run checks afresh.
    return undefined
  }
  if (v.broken) throw refuse(v.broken)
  if (!v.anchored && !(await checkpointVouchesFor(source, first, v.macFrom, signal))) {
    throw refuse({ seq: Number(first.seq), reason: `records before seq ${first.seq} are missing and no checkpoint vouches for their removal` })
  }
  if (ranges.at(-1)?.through !== Number(last.seq)) ranges.push({ first: chunkFirst, through: Number(last.seq), hash: last.hash, stating })
  return ranges
}

/**
 * Whether an intact checkpoint record states that retention removed the records before `first`. From
 * where MACs began only one the broker wrote counts: with its MAC, and with this store's key a MAC that
 * verifies. The records read before (`macFrom`) may all predate MACs while the checkpoint does not, so the
 * start is also taken from the log: the statements opening MACs and the checkpoints carrying it on, each
 * believed only with a MAC that verifies under this store's key.
 */
async function checkpointVouchesFor(source: ChainSource, first: StoredRow, macFrom: number | undefined, signal: AbortSignal | undefined): Promise<boolean> {
  let from = macFrom
  // The intact checkpoints that name `first`, as read here: judged by their MAC once `from` is known.
  const candidates: StoredRow[] = []
  for (const type of [MACS_STARTED, 'audit.checkpoint'] as const) {
    let cursor: string | undefined
    // Bounded: each page moves the cursor back; there is one statement per MAC era and one checkpoint per prune chunk (200 per million records pruned).
    for (;;) {
      signal?.throwIfAborted()
      const page = await source.query({ type, limit: MAX_PAGE, ...(cursor !== undefined ? { cursor } : {}) })
      const rows = new Map((await source.readRows(page.records.map((r) => r.seq))).map((r) => [Number(r.seq), r]))
      for (const r of page.records) {
        const row = rows.get(r.seq)
        if (!row || typeof checkRecord(row) === 'string') continue
        const stated = statedMacFrom(r.event)
        const keyed = source.auditMac !== undefined && typeof row.mac === 'string' && macProblem(source.auditMac, row.hash, row.mac) === undefined
        if (stated !== undefined && stated <= r.seq && keyed) from = Math.min(from ?? stated, stated)
        const d = r.event.detail as Partial<CheckpointDetail> | undefined
        if (type === 'audit.checkpoint' && d?.prunedThroughSeq === Number(first.seq) - 1 && d.prunedLastHash === first.prev_hash) candidates.push(row)
      }
      if (page.nextCursor === undefined) break
      cursor = page.nextCursor
    }
  }
  return candidates.some((row) => macVouches(row, source.auditMac, from))
}
