import type { AuditEvent, AuditRecord } from './audit_log.ts'

/** A record as `GET /v1/audit` answers it and `audit export` / `audit list --json` write it (docs/audit.md). */
export type WireRecord =
  | { seq: number; hash: string; prev_hash: string; event: AuditEvent }
  /**
   * A body that is no event (edited by hand, or corrupted): why, and the body as stored, instead of `event`.
   * It does not verify; `audit verify` names it.
   */
  | { seq: number; hash: string; prev_hash: string; unreadable: { reason: string; body: string } }

export function wireRecord(r: AuditRecord): WireRecord {
  if (r.unreadable) return { seq: r.seq, hash: r.hash, prev_hash: r.prevHash, unreadable: { ...r.unreadable } }
  return { seq: r.seq, hash: r.hash, prev_hash: r.prevHash, event: r.event }
}
