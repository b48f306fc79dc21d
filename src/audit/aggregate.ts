/**
 * Counting the audit log for overviews (the console's charts, GET /v1/audit/summary): every backend answers
 * with one GROUP BY over the time range, so the cost follows the records in the range, never the whole
 * log, and no row leaves the database.
 */

/** The event types the overview counts: issuances (first and renewed) and denials. */
export const COUNTED_TYPES = ['token.issued', 'token.renewed', 'token.denied'] as const
export type CountedType = (typeof COUNTED_TYPES)[number]

/** The labels the overview splits by; one scan counts all three at once. */
export type SplitDimension = 'role' | 'site' | 'token_kind'
export const SPLIT_DIMENSIONS: readonly SplitDimension[] = ['role', 'site', 'token_kind']

export interface CountQuery {
  /** Epoch seconds, inclusive. */
  from: number
  /** Epoch seconds, inclusive. */
  to: number
  /** Bucket width in seconds (3600 or 86400); buckets start at multiples of it since the epoch (UTC). */
  bucketSeconds: number
}

/** Records of one bucket, type and label combination; a null label is a record without it. */
export interface CountRow {
  /** Start of the bucket, epoch seconds. */
  bucket: number
  type: CountedType
  role: string | null
  site: string | null
  token_kind: string | null
  count: number
}

export interface ReasonRow {
  reason: string | null
  count: number
  /** Denials whose body cannot be read (edited by hand, or corrupted): counted apart, their reason unknown. */
  unreadable?: true
}

export interface LiveRow {
  site: string | null
  role: string | null
  count: number
}

/** The read side the overview needs; SQLite, PostgreSQL and memory stores implement it. */
export interface AuditAggregates {
  /** Records of COUNTED_TYPES in [from, to], grouped by bucket, type, role, site and token kind. */
  countByTime(q: CountQuery): Promise<CountRow[]>
  /** Denials in [from, to] by reason (read from the record body: denials are few, and indexed). */
  countDenialReasons(q: { from: number; to: number }): Promise<ReasonRow[]>
  /**
   * Tokens issued or renewed since `since` whose `exp` is after `now`, by site and role. `since` bounds the
   * scan (now minus the longest token lifetime); a revoked token still counts until it expires.
   */
  countLive(q: { now: number; since: number }): Promise<LiveRow[]>
}

export function assertCountQuery(q: { from: number; to: number; bucketSeconds?: number }): void {
  if (!Number.isSafeInteger(q.from) || !Number.isSafeInteger(q.to) || q.from > q.to) throw new TypeError('from and to must be integers, from <= to')
  if (q.bucketSeconds !== undefined && (!Number.isSafeInteger(q.bucketSeconds) || q.bucketSeconds < 60)) throw new TypeError('bucketSeconds must be an integer >= 60')
}

/** `IN (...)` list of COUNTED_TYPES as SQL literals (constants, never input). */
export const COUNTED_TYPES_SQL = COUNTED_TYPES.map((t) => `'${t}'`).join(', ')
