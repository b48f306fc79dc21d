/**
 * Counting the audit log for overviews (the console's charts, GET /v1/audit/summary): every backend answers
 * with one GROUP BY over the time range, so the cost follows the records in the range, never the whole
 * log, and no row leaves the database.
 */

/** The event types the overview counts: issuances (first and renewed) and denials. */
export const COUNTED_TYPES = ['token.issued', 'token.renewed', 'token.denied'] as const
export type CountedType = (typeof COUNTED_TYPES)[number]

/** What one series is split by: an indexed column, or a denial's reason (read from the record body). */
export type AggregateDimension = 'role' | 'site' | 'token_kind' | 'reason'
export const AGGREGATE_DIMENSIONS: readonly AggregateDimension[] = ['role', 'site', 'token_kind', 'reason']

export interface CountQuery {
  /** Epoch seconds, inclusive. */
  from: number
  /** Epoch seconds, inclusive. */
  to: number
  /** Bucket width in seconds (3600 or 86400); buckets start at multiples of it since the epoch (UTC). */
  bucketSeconds: number
  by: AggregateDimension
}

export interface CountRow {
  /** Start of the bucket, epoch seconds. */
  bucket: number
  type: CountedType
  /** The dimension's value; null when the record has none (e.g. a denial before any role was known). */
  key: string | null
  count: number
}

export interface LiveRow {
  site: string | null
  role: string | null
  count: number
}

/** The read side the overview needs; SQLite, PostgreSQL and memory stores implement it. */
export interface AuditAggregates {
  /** Records of COUNTED_TYPES in [from, to], grouped by bucket, type and `by`. */
  countByTime(q: CountQuery): Promise<CountRow[]>
  /**
   * Tokens issued or renewed since `since` whose `exp` is after `now`, by site and role. `since` bounds the
   * scan (now minus the longest token lifetime); a revoked token still counts until it expires.
   */
  countLive(q: { now: number; since: number }): Promise<LiveRow[]>
}

export function assertCountQuery(q: CountQuery): void {
  if (!Number.isSafeInteger(q.from) || !Number.isSafeInteger(q.to) || q.from > q.to) throw new TypeError('from and to must be integers, from <= to')
  if (!Number.isSafeInteger(q.bucketSeconds) || q.bucketSeconds < 60) throw new TypeError('bucketSeconds must be an integer >= 60')
  if (!AGGREGATE_DIMENSIONS.includes(q.by)) throw new TypeError(`unknown dimension ${String(q.by)}`)
}

/** `IN (...)` list of COUNTED_TYPES as SQL literals (constants, never input). */
export const COUNTED_TYPES_SQL = COUNTED_TYPES.map((t) => `'${t}'`).join(', ')
