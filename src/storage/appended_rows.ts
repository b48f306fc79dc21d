import type { AuditEvent } from '../audit/audit_log.ts'
import { columnsOf, encodeEventBody, recordHash, type AuditColumns, type CheckpointDetail, type StoredRow } from '../audit/chain.ts'
import { recordMac, type AuditMacKey } from '../audit/record_mac.ts'
import type { Revocation } from '../revocation/revocation.ts'
import type { CarriedRevocations } from '../revocation/revocation_consistency.ts'

/** The row for one op at `seq`, linked to `prevHash`, with its MAC under `mac` (null without a key). */
export function chainRow(seq: number, prevHash: string, body: string, cols: AuditColumns, mac?: AuditMacKey): StoredRow {
  const hash = recordHash(seq, prevHash, body)
  return { ...cols, seq, body, prev_hash: prevHash, hash, mac: mac ? recordMac(mac, hash) : null }
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
