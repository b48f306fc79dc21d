import type { Clock } from '../lib/clock.ts'
import type { Logger } from '../lib/logger.ts'
import type { AuditStore, PruneResult } from './audit_log.ts'

/** The cut-off for a retention of `days` at `now`: records strictly older are pruned. */
export function retentionCutoff(now: number, days: number): number {
  return now - days * 86400
}

/**
 * How many seconds back records must stay whatever the retention, for a reader that still needs them
 * (the pool CA's CRL: certificate_retention.ts). Asked at each prune: it can grow while serving.
 */
export type RetentionFloor = () => Promise<number>

/** What one prune did, and the cut-off it used when a floor held it back from the retention's. */
export type PruneOutcome = PruneResult & { heldBackTo?: number }

/**
 * Prunes once, in chunks; the store appends a checkpoint per chunk so `audit verify` still passes after each
 * (chain.ts). `signal` abandons the prune while it is still reading what to delete (rejecting with its
 * reason); once a chunk's delete is submitted, that chunk completes and no further one starts (resolving
 * with what the committed chunks pruned).
 */
export async function pruneExpired(store: AuditStore, clock: Clock, days: number, floor?: RetentionFloor, signal?: AbortSignal): Promise<PruneOutcome> {
  const now = clock.now()
  const cutoff = retentionCutoff(now, days)
  const before = floor ? Math.min(cutoff, now - await floor()) : cutoff
  const pruned = await store.prune(before, now, signal ? { signal } : {})
  return before < cutoff ? { ...pruned, heldBackTo: before } : pruned
}

/**
 * Runs retention every `intervalSeconds` while serving; `days` 0 disables it. A failed prune is logged and
 * retried at the next tick: it never affects issuance. One prune at a time: a tick that finds one running
 * leaves it be.
 * @returns stop: clears the timer and abandons a prune in flight, resolving once it has let go of the
 *   store (serve closes the store next). A prune still reading what to delete stops there, having changed
 *   nothing; a chunk whose delete is already submitted is waited for and no further one starts, so no
 *   chunk is left half done and none runs against a closed store.
 */
export function startRetention(store: AuditStore, options: { days: number; intervalSeconds: number; clock: Clock; log: Logger; floor?: RetentionFloor }): () => Promise<void> {
  if (options.days <= 0) return async () => {}
  const stopping = new AbortController()
  let running: Promise<void> | undefined
  const tick = () => {
    running ??= pruneExpired(store, options.clock, options.days, options.floor, stopping.signal)
      .then((r) => { if (r.pruned > 0) options.log.info('audit retention pruned records', { pruned: r.pruned, checkpoint_seq: r.checkpointSeq, ...(r.chunks !== undefined ? { chunks: r.chunks } : {}) }) })
      .catch((err: unknown) => {
        // Abandoned at shutdown: not a failure, and there is no next tick to retry at.
        if (stopping.signal.aborted) return
        options.log.warn('audit retention failed; will retry', { err })
      })
      .finally(() => { running = undefined })
  }
  const timer = setInterval(tick, options.intervalSeconds * 1000)
  timer.unref()
  return async () => {
    clearInterval(timer)
    stopping.abort(new Error('the broker is stopping'))
    await running
  }
}
