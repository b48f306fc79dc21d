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

/** Prunes once; the store appends a checkpoint so `audit verify` still passes (chain.ts). */
export async function pruneExpired(store: AuditStore, clock: Clock, days: number, floor?: RetentionFloor): Promise<PruneOutcome> {
  const now = clock.now()
  const cutoff = retentionCutoff(now, days)
  const before = floor ? Math.min(cutoff, now - await floor()) : cutoff
  const pruned = await store.prune(before, now)
  return before < cutoff ? { ...pruned, heldBackTo: before } : pruned
}

/**
 * Runs retention every `intervalSeconds` while serving; `days` 0 disables it. A failed prune is logged and
 * retried at the next tick: it never affects issuance.
 */
export function startRetention(store: AuditStore, options: { days: number; intervalSeconds: number; clock: Clock; log: Logger; floor?: RetentionFloor }): () => void {
  if (options.days <= 0) return () => {}
  const tick = () => {
    pruneExpired(store, options.clock, options.days, options.floor)
      .then((r) => { if (r.pruned > 0) options.log.info('audit retention pruned records', { pruned: r.pruned, checkpoint_seq: r.checkpointSeq }) })
      .catch((err: unknown) => options.log.warn('audit retention failed; will retry', { err }))
  }
  const timer = setInterval(tick, options.intervalSeconds * 1000)
  timer.unref()
  return () => clearInterval(timer)
}
