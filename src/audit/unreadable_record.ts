import type { AuditEvent, AuditEventType } from './audit_log.ts'
import type { StoredRow } from './chain.ts'
import type { ReasonRow } from './aggregate.ts'

/**
 * A stored body that is not an event: edited by hand (whoever can write the SQLite file or the PostgreSQL
 * table) or corrupted. Every read used to parse it and fail, so one such row made searches, exports, the
 * console's pages and the summary answer 500; it is read as an unreadable record at its seq instead, and the
 * chain checks name it (`body is not valid JSON`, or not in canonical form).
 */

/** The event in a stored body, or why there is none. */
export function readBody(body: string): AuditEvent | string {
  let e: unknown
  try {
    e = JSON.parse(body)
  } catch {
    return 'body is not valid JSON'
  }
  // Readers take `type` and `time` for granted (the CLI's line, the console's dates): without them it is no event.
  if (typeof e !== 'object' || e === null || Array.isArray(e)) return 'body is not an audit event'
  const { type, time } = e as { type?: unknown; time?: unknown }
  if (typeof type !== 'string' || !Number.isSafeInteger(time)) return 'body is not an audit event'
  return e as AuditEvent
}

/**
 * What the row's indexed columns say, as an event: the stand-in for an unreadable body, so searches, filters
 * and listings still place the record. They are copies outside the hash, never evidence of anything. Searches
 * read only `time` and `type` of them (the rest are absent from their rows); scans read them all.
 */
export function eventFromColumns(row: StoredRow): AuditEvent {
  const caller = {
    ...(row.caller_iss != null ? { iss: row.caller_iss } : {}),
    ...(row.caller_sub != null ? { sub: row.caller_sub } : {}),
    ...(row.client_id != null ? { client_id: row.client_id } : {}),
  }
  return {
    // PostgreSQL hands bigint columns back as strings.
    type: row.type as AuditEventType, time: Number(row.time),
    ...(row.request_id != null ? { requestId: row.request_id } : {}),
    ...(Object.keys(caller).length > 0 ? { caller } : {}),
    ...(row.role != null ? { role: row.role } : {}),
    ...(row.token_kind != null ? { tokenKind: row.token_kind } : {}),
    ...(row.issued_sub != null ? { issuedSub: row.issued_sub } : {}),
    ...(row.jti != null ? { jti: row.jti } : {}),
    ...(row.decision === 'allow' || row.decision === 'deny' ? { decision: row.decision } : {}),
    ...(row.exp != null ? { exp: Number(row.exp) } : {}),
    ...(row.site != null ? { site: row.site } : {}),
  }
}

/**
 * Denials counted by reason from their stored bodies, the unreadable ones apart (ReasonRow.unreadable): for a
 * backend that cannot count in the database (the memory store, or PostgreSQL when a body fails its cast).
 */
export function countReasonsOfBodies(bodies: Iterable<string>): ReasonRow[] {
  const counts = new Map<string | null, number>()
  let unreadable = 0
  for (const body of bodies) {
    const e = readBody(body)
    if (typeof e === 'string') { unreadable++; continue }
    counts.set(e.reason ?? null, (counts.get(e.reason ?? null) ?? 0) + 1)
  }
  const rows: ReasonRow[] = [...counts].map(([reason, count]) => ({ reason, count }))
  return unreadable > 0 ? [...rows, { reason: null, count: unreadable, unreadable: true }] : rows
}
