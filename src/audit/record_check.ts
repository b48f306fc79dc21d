import type { AuditRecord, AuditStore } from './audit_log.ts'
import { columnDifferences, columnDiffers, encodeEventBody, GENESIS_HASH, type MacVerdict, recordHash, rowToRecord, type StoredRow } from './chain.ts'

/** Where one record sits in the chain and whether it holds there, as the console's record page shows it. */
export interface RecordCheck {
  record: AuditRecord
  /** Its stored hash is sha256 over its seq, prev_hash and stored body, and that body is in canonical form. */
  hashOk: boolean
  /**
   * Why each indexed column that no longer says what the hashed body says (`audit verify`'s wording), in
   * column order; empty when they agree. Searches select by these columns, so an edit here hides the record.
   */
  columnFaults: string[]
  /** prev_hash equals the previous record's hash (or the genesis hash at seq 1); null: the previous record was pruned. */
  linkedToPrevious: boolean | null
  /** The next record's prev_hash is this record's hash; null: this is the head. */
  linkedFromNext: boolean | null
  /** What its MAC says (docs/audit.md, "Record MACs"): without it a record appended by SQL read as verifying. */
  mac: MacVerdict
}

/**
 * Checks one record against itself and its two neighbours: the local part of `audit verify`. Reads the rows
 * as stored: judged by its re-encoded body alone, a record whose `caller_sub` or `type` column was edited
 * (which every search selects by) showed as verifying. A whole-chain verification (AuditStore.verify) is what
 * proves no record is missing elsewhere.
 */
export async function checkRecordInChain(store: Pick<AuditStore, 'scanStored' | 'macVerdict'>, seq: number): Promise<RecordCheck | undefined> {
  if (!Number.isSafeInteger(seq) || seq < 1) return undefined
  const got: StoredRow[] = []
  for await (const r of store.scanStored(Math.max(1, seq - 1))) {
    if (Number(r.seq) > seq + 1) break
    got.push(r)
    if (got.length === 3) break
  }
  const row = got.find((r) => Number(r.seq) === seq)
  if (!row) return undefined
  const prev = got.find((r) => Number(r.seq) === seq - 1)
  const next = got.find((r) => Number(r.seq) === seq + 1)
  const record = rowToRecord(row)
  return {
    record,
    hashOk: encodeEventBody(record.event) === row.body && recordHash(seq, row.prev_hash, row.body) === row.hash,
    // An unreadable body says nothing to compare the columns with (its stand-in event is the columns themselves).
    columnFaults: record.unreadable ? [`the columns cannot be checked: ${record.unreadable.reason}`] : columnDifferences(row, record.event).map(columnDiffers),
    linkedToPrevious: seq === 1 ? row.prev_hash === GENESIS_HASH : prev ? prev.hash === row.prev_hash : null,
    linkedFromNext: next ? next.prev_hash === row.hash : null,
    mac: store.macVerdict(row, prev),
  }
}
