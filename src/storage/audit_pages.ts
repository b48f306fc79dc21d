import type { AuditPage, AuditQuery } from '../audit/audit_log.ts'
import { rowToRecord, type AuditColumns, type StoredRow } from '../audit/chain.ts'
import { InvalidRequest } from '../errors.ts'

/** The most records one page of an audit query holds: a larger `limit` is refused (assertPageSize). */
export const MAX_PAGE = 1000

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
