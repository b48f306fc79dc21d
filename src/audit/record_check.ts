import type { AuditRecord, AuditStore } from './audit_log.ts'
import { encodeEventBody, GENESIS_HASH, recordHash } from './chain.ts'

/** Where one record sits in the chain and whether it holds there, as the console's record page shows it. */
export interface RecordCheck {
  record: AuditRecord
  /** Its stored hash is sha256 over its seq, prev_hash and canonical body. */
  hashOk: boolean
  /** prev_hash equals the previous record's hash (or the genesis hash at seq 1); null: the previous record was pruned. */
  linkedToPrevious: boolean | null
  /** The next record's prev_hash is this record's hash; null: this is the head. */
  linkedFromNext: boolean | null
}

/**
 * Checks one record against itself and its two neighbours: the local part of `audit verify`. A whole-chain
 * verification (AuditStore.verify) is what proves no record is missing elsewhere.
 */
export async function checkRecordInChain(store: Pick<AuditStore, 'scan'>, seq: number): Promise<RecordCheck | undefined> {
  if (!Number.isSafeInteger(seq) || seq < 1) return undefined
  const got: AuditRecord[] = []
  for await (const r of store.scan(Math.max(1, seq - 1))) {
    if (r.seq > seq + 1) break
    got.push(r)
    if (got.length === 3) break
  }
  const record = got.find((r) => r.seq === seq)
  if (!record) return undefined
  const prev = got.find((r) => r.seq === seq - 1)
  const next = got.find((r) => r.seq === seq + 1)
  return {
    record,
    hashOk: recordHash(record.seq, record.prevHash, encodeEventBody(record.event)) === record.hash,
    linkedToPrevious: seq === 1 ? record.prevHash === GENESIS_HASH : prev ? prev.hash === record.prevHash : null,
    linkedFromNext: next ? next.prevHash === record.hash : null,
  }
}
