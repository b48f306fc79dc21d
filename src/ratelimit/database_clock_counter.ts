import { RateLimiterPostgres, RateLimiterRes } from 'rate-limiter-flexible'

/** The database's clock in epoch milliseconds, as SQL: the one clock every replica's statement reads. */
const DB_NOW_MS = '(extract(epoch FROM statement_timestamp()) * 1000)::bigint'

/** Rows this long past their window are deleted (rate-limiter-flexible's own margin). */
const EXPIRED_MARGIN_MS = 3_600_000

interface Row { points: number; expire: string | number | null; ms_left: string | number | null }
interface QueryResult { rows: Row[]; rowCount: number }
type Query = (q: { name?: string; text: string; values: unknown[] }) => Promise<QueryResult>

/**
 * rate-limiter-flexible's PostgreSQL counter, timed by the database instead of by each replica. The
 * library writes and compares a row's `expire` with the Date.now() of whichever replica asks: a replica
 * whose clock runs ahead by the window or more takes every shared window for over and starts a new one,
 * so its callers are never limited, and starts them early for the other replicas too. Here the window
 * opens, closes and is measured (Retry-After) on the database's clock alone; replicas may disagree.
 *
 * Only the three store calls are replaced; blocks, the insurance limiter and penalties stay the library's.
 * The methods are the library's store hooks (RateLimiterStoreAbstract), which its typings leave out.
 */
export class DatabaseClockCounter extends RateLimiterPostgres {
  #table(): string {
    return `"${(this as unknown as { tableName: string }).tableName}"`
  }

  #query(q: { name: string; text: string; values: unknown[] }): Promise<QueryResult> {
    return ((this as unknown as { _query: Query })._query).call(this, q)
  }

  _upsert(key: string, points: number, msDuration: number, forceExpire = false): Promise<QueryResult> {
    const t = this.#table()
    // A window restarts when the stored one is over on the database's clock (or the caller forces it).
    const restart = `(${t}.expire <= (SELECT ms FROM db_clock) OR $4::boolean)`
    return this.#query({
      name: forceExpire ? 'ctb-upsert-force' : 'ctb-upsert',
      text: `WITH db_clock AS (SELECT ${DB_NOW_MS} AS ms)
        INSERT INTO ${t} (key, points, expire)
          SELECT $1, $2, CASE WHEN $3::bigint > 0 THEN ms + $3::bigint END FROM db_clock
        ON CONFLICT (key) DO UPDATE SET
          points = CASE WHEN ${restart} THEN EXCLUDED.points ELSE ${t}.points + EXCLUDED.points END,
          expire = CASE WHEN ${restart} THEN EXCLUDED.expire ELSE ${t}.expire END
        RETURNING points, expire, expire - (SELECT ms FROM db_clock) AS ms_left`,
      values: [key, points, msDuration, forceExpire],
    })
  }

  _get(key: string): Promise<QueryResult | null> {
    const t = this.#table()
    return this.#query({
      name: 'ctb-get',
      text: `SELECT points, expire, expire - ${DB_NOW_MS} AS ms_left FROM ${t} WHERE key = $1 AND (expire IS NULL OR expire > ${DB_NOW_MS})`,
      values: [key],
    }).then((res) => (res.rowCount === 0 ? null : res))
  }

  _getRateLimiterRes(_key: string, changedPoints: number, result: QueryResult): RateLimiterRes {
    const row = result.rows[0]!
    const isFirst = changedPoints === row.points
    const consumed = isFirst ? changedPoints : row.points
    // pg returns bigint as text; -1 is the library's "no expiry".
    const msBeforeNext = row.ms_left === null ? -1 : Math.max(Number(row.ms_left), 0)
    return new RateLimiterRes(Math.max(this.points - consumed, 0), msBeforeNext, consumed, isFirst)
  }

  /** The library's hourly clean-up passes its own clock's time; the database's is used instead. */
  clearExpired(): Promise<void> {
    return this.#query({
      name: 'ctb-clear-expired',
      text: `DELETE FROM ${this.#table()} WHERE expire < ${DB_NOW_MS} - $1::bigint`,
      values: [EXPIRED_MARGIN_MS],
    }).then(() => undefined, () => undefined)
  }
}
