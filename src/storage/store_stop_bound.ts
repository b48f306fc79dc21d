import type { Logger } from '../lib/logger.ts'
import type { AbandonedWork, BrokerStore } from './chained_store.ts'

/**
 * How long the services' close (after the requests' grace) may wait on the audit database before the
 * broker cuts its connections to it. It holds the anchored check at stop (at most 5 s,
 * revocation_watch.ts) and the last writes (the refusal aggregate, a prune already submitted, the close of
 * the write queue), which take milliseconds on a database that answers.
 */
export const STORE_STOP_MS = 10_000

/**
 * Arms the bound when the services' close starts; the returned function disarms it and tells what was cut
 * (nothing when the close ended in time). A database that neither answers nor fails (a PostgreSQL server
 * stopped, or cut off by a network black hole: the connection stays open, no error comes) would otherwise
 * hold the close, and with it the exit that SIGTERM asks for, without bound: pg's pool.end() waits for a
 * busy connection, and the write queue for its transaction. Only a store with something to cut (abandon)
 * is bounded: SQLite's writes end with the disk's.
 */
export function boundStoreStop(store: Pick<BrokerStore, 'abandon'>, log: Logger, ms = STORE_STOP_MS): () => AbandonedWork | undefined {
  if (!store.abandon) return () => undefined
  let cut: AbandonedWork | undefined
  const timer = setTimeout(() => {
    cut = store.abandon!()
    log.warn(`PostgreSQL did not let the stop finish within ${ms / 1000} s: abandoned ${cut.connections} connection(s) still waiting on it and ${cut.unwritten} write(s) it had not committed; no token was answered for them`, { ...cut })
  }, ms)
  return () => { clearTimeout(timer); return cut }
}
