import type { Clock } from '../lib/clock.ts'
import type { Logger } from '../lib/logger.ts'
import type { AuditStore, PruneResult } from './audit_log.ts'

/** The cut-off for a retention of `days` at `now`: records strictly older are pruned. */
export function retentionCutoff(now: number, days: number): number {
  return now - days * 86400
}

/** Prunes once; the store appends a checkpoint so `audit verify` still passes (chain.ts). */
export async function pruneExpired(store: AuditStore, clock: Clock, days: number): Promise<PruneResult> {
  const now = clock.now()
  return store.prune(retentionCutoff(now, days), now)
}

/**
 * Runs retention every `intervalSeconds` while serving; `days` 0 disables it. A failed prune is logged and
 * retried at the next tick: it never affects issuance.
 */
export function startRetention(store: AuditStore, options: { days: number; intervalSeconds: number; clock: Clock; log: Logger }): () => void {
  if (options.days <= 0) return () => {}
  const tick = () => {
    pruneExpired(store, options.clock, options.days)
      .then((r) => { if (r.pruned > 0) options.log.info('audit retention pruned records', { pruned: r.pruned, checkpoint_seq: r.checkpointSeq }) })
      .catch((err: unknown) => options.log.warn('audit retention failed; will retry', { err }))
  }
  const timer = setInterval(tick, options.intervalSeconds * 1000)
  timer.unref()
  return () => clearInterval(timer)
}
