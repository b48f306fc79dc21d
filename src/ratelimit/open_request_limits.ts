import { RateLimiterMemory } from 'rate-limiter-flexible'
import type { Config } from '../config.ts'
import { OperatorError } from '../errors.ts'
import type { Logger } from '../lib/logger.ts'
import { DatabaseClockCounter } from './database_clock_counter.ts'
import { RequestLimits, type CounterFactory } from './request_limits.ts'

/** The table rate-limiter-flexible keeps its counters in, beside the audit tables. */
export const RATE_LIMIT_TABLE = 'rate_limits'

/** Warn about a store that fails at most this often; the fall-back itself is silent otherwise. */
const STORE_WARNING_INTERVAL_MS = 60_000

export interface OpenedRequestLimits {
  limits: RequestLimits
  /** Where caller and role counters live. */
  store: 'memory' | 'postgres'
  close(): Promise<void>
}

const memoryCounter: CounterFactory = (o) => new RateLimiterMemory(o)

/**
 * Builds the rate limits from `rate_limits:`. On PostgreSQL (rate_limits.store postgres, or auto with
 * audit.store postgres) caller and role counters live in one table every replica updates atomically, so a
 * limit holds for the replicas together. Should the database fail or not answer within
 * rate_limits.postgres.timeout_ms, each replica counts in its own memory meanwhile (rate-limiter-flexible's
 * insurance limiter): a limit then holds per replica, and requests keep being served. Issuance itself still
 * fails closed on the audit store, so this only decides whether a database hiccup also turns into 429s.
 */
export async function openRequestLimits(
  config: Config,
  deps: { log: Logger; /** Each count the shared store failed to take, taken in this replica's memory instead. */ onStoreFallback?: () => void },
): Promise<OpenedRequestLimits> {
  const rl = config.rate_limits
  const auditWindowSeconds = config.audit.denied_aggregate_seconds
  const postgres = rl.store === 'postgres' || (rl.store === 'auto' && config.audit.store === 'postgres')
  const needsStore = rl.caller.requests > 0 || rl.role.requests > 0 || Object.values(rl.roles).some((l) => l.requests > 0)
    || (config.credentials.enabled && rl.registration.requests > 0)
  if (!postgres || !needsStore) {
    const limits = new RequestLimits(rl, { shared: memoryCounter, local: memoryCounter }, { auditWindowSeconds })
    return { limits, store: 'memory', close: async () => undefined }
  }

  // pg is loaded only for a PostgreSQL store, so an SQLite broker never holds it.
  const { cuttablePool } = await import('../storage/pg_connections.ts')
  const connections = cuttablePool({
    connectionString: config.audit.postgres.dsn!,
    max: rl.postgres.pool_size,
    connectionTimeoutMillis: rl.postgres.timeout_ms,
    query_timeout: rl.postgres.timeout_ms,
  })
  const { pool } = connections
  // An idle client losing its connection must not crash the process; the next query reconnects.
  pool.on('error', () => {})
  try {
    await pool.query(`CREATE TABLE IF NOT EXISTS ${RATE_LIMIT_TABLE} (key varchar(255) PRIMARY KEY, points integer NOT NULL DEFAULT 0, expire bigint)`)
  } catch (err) {
    // Replicas starting together race on CREATE TABLE IF NOT EXISTS: the loser sees a unique violation.
    if ((err as { code?: string }).code !== '23505') {
      await connections.end().catch(() => {})
      throw new OperatorError('ERATELIMITSTORE', `cannot create the rate-limit table in the PostgreSQL audit database: ${(err as Error).message}`, { cause: err })
    }
  }

  let warnedAt = -Infinity
  const onFallback = () => {
    deps.onStoreFallback?.()
    const now = Date.now()
    if (now - warnedAt < STORE_WARNING_INTERVAL_MS) return
    warnedAt = now
    deps.log.warn('the rate-limit store in PostgreSQL failed or was slow; counting in this replica\'s memory meanwhile')
  }
  let first = true
  const shared: CounterFactory = (o) => {
    const clearExpiredByTimeout = first
    first = false
    // Timed by the database, not by this replica's clock: replicas' clocks may disagree.
    return new DatabaseClockCounter({
      ...o,
      storeClient: pool,
      storeType: 'pool',
      tableName: RATE_LIMIT_TABLE,
      tableCreated: true,
      // One limiter deletes long-expired rows (every 5 minutes); the others need not repeat it.
      clearExpiredByTimeout,
      // Once a key is over its limit, this replica refuses it from memory until the window ends instead of
      // asking the database again: a caller hammering a limit costs no round trips.
      inMemoryBlockOnConsumed: o.points + 1,
      insuranceLimiter: new InsuranceLimiter(o, onFallback),
    })
  }
  const limits = new RequestLimits(rl, { shared, local: memoryCounter }, { auditWindowSeconds, digestKeys: true })
  // The limits wait no longer than timeout_ms for the database while serving, nor at close: a server that
  // stopped answering would hold pg's end of a connection, and with it the broker's exit, forever.
  return { limits, store: 'postgres', close: async () => { await connections.endWithin(rl.postgres.timeout_ms) } }
}

/** The per-replica memory counter rate-limiter-flexible falls back to; says so (rarely) when it is used. */
class InsuranceLimiter extends RateLimiterMemory {
  readonly #onUse: () => void
  constructor(o: { points: number; duration: number; keyPrefix: string }, onUse: () => void) {
    super(o)
    this.#onUse = onUse
  }

  override consume(...args: Parameters<RateLimiterMemory['consume']>): ReturnType<RateLimiterMemory['consume']> {
    this.#onUse()
    return super.consume(...args)
  }
}
