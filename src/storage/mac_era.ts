import type { AuditEvent } from '../audit/audit_log.ts'
import { columnsOf, encodeEventBody, macFromValue, type AuditColumns, type StoredRow } from '../audit/chain.ts'
import { macProblem, MACS_STARTED, type AuditMacKey } from '../audit/record_mac.ts'
import { REVOCATION_RECORDS_WHERE } from './revocation_rows.ts'

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

/** Whether a row's MAC lets it count as the broker's, as a ChainVerifier would judge it (see chain.ts). */
export function macVouches(row: StoredRow, key: AuditMacKey | undefined, macFrom: number | undefined): boolean {
  if (typeof row.mac !== 'string' || row.mac === '') return macFrom === undefined || Number(row.seq) < macFrom
  return key === undefined || macProblem(key, row.hash, row.mac) === undefined
}
