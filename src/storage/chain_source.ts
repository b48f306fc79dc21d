import type { AuditPage, AuditQuery } from '../audit/audit_log.ts'
import type { ChainHead, MacCheck, StoredRow } from '../audit/chain.ts'
import type { AuditMacKey } from '../audit/record_mac.ts'
import type { IssuanceHorizons, Revocation } from '../revocation/revocation.ts'

/** The table side of the revocation check and the chain's extent, read in one snapshot. */
export interface RevocationState {
  /** Undefined when the head row is gone. */
  head: ChainHead | undefined
  /** Lowest seq in the log (0 when empty). */
  firstSeq: number
  rows: Revocation[]
  /**
   * The answer, in the same snapshot, of the very query the broker enforces from (listRevocations with
   * activeAt), asked at `at`: the check holds it against `rows`, so an index or view that makes that query
   * leave out (or add) what the whole table shows cannot pass a check while every process started afresh
   * enforces less than the checked table.
   */
  active: { at: number; rows: Revocation[] }
  generations: Map<string, number>
  horizons: IssuanceHorizons
}

/**
 * What the checks a ChainedStore runs (revocation_check.ts, verify_all.ts, prune_range.ts) read from its
 * backend, and the audit MAC key they check with: the store's own protected reads, handed over as one object
 * so those checks can live in files of their own.
 */
export interface ChainSource {
  readonly auditMac: AuditMacKey | undefined
  /** The separately stored chain head (seq 0 and the genesis hash when empty; undefined when its row is gone). */
  readHead(): Promise<ChainHead | undefined>
  /** Raw rows in seq order from `fromSeq`, in bounded chunks. */
  scanRows(fromSeq: number): AsyncIterable<StoredRow>
  /** The rows with these seqs (those present). */
  readRows(seqs: readonly number[]): Promise<StoredRow[]>
  readRevocationState(): Promise<RevocationState>
  readAnchor(): Promise<string | undefined>
  writeAnchor(sealed: string): Promise<void>
  query(q: AuditQuery): Promise<AuditPage>
}

/** The MAC part of every chain check the store runs: its key, when it has one. */
export function macCheck(source: Pick<ChainSource, 'auditMac'>): MacCheck {
  return source.auditMac ? { key: source.auditMac } : {}
}
