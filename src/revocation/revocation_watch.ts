import type { AnchorCopy } from '../audit/anchor.ts'
import { OperatorError } from '../errors.ts'
import type { Logger } from '../lib/logger.ts'
import { assertRevocationsMatchAudit } from './revocation_consistency.ts'
import type { AnchoredCheckOptions, RevocationVerification } from './revocation_consistency.ts'

/** How long after a revocation or lift the check runs: a burst of them (a script revoking a site's hosts) makes one. */
export const AFTER_CHANGE_MS = 1000
/** How long a clean stop waits for its last check (an anchored one takes milliseconds, a full one ~1 s per 100,000 records). */
export const STOP_CHECK_MS = 5000
/**
 * After a check whose anchor could not be written into the database (another process held the write lock
 * past the writer's busy timeout, a full disk), how soon the check runs again rather than at the next
 * `anchor_interval` (10 minutes by default): the anchor is what a restored older copy is caught by. Each
 * retry seals a fresh anchor, so none older than the last check is ever written.
 */
export const ANCHOR_RETRY_MS = 30_000

export interface RevocationWatch {
  /** One check now (the timer's, for tests). Never rejects: problems are logged. */
  check(): Promise<void>
  /**
   * A revocation or lift committed: check (and seal an anchor) soon, once for a burst. A check already
   * running may have read the log before the commit, so one more follows it.
   */
  afterChange(): void
  /**
   * Stops the timers and runs one last check, so the anchor covers everything appended until the stop; one
   * that does not finish within `stopCheckMs` is abandoned and said so. Resolves once the check has let go of
   * the store (closed next), or at that bound: a check still waiting on the database then fails on its own
   * (its reads after the close fail, and it was told to stop).
   */
  stop(): Promise<void>
  /**
   * How an anchor write went (a check's onAnchorWrite), for the start-up check run before the watch: a
   * failure is logged once per run of failures and the check retried after `anchorRetryMs`; a write after
   * failures is logged once.
   */
  anchorWritten(failure: unknown): void
}

/**
 * The start-up check, repeated while serving: resumes from the sealed anchor (hashing only the records
 * appended since) and seals a new one, in the database and in its copy outside. Without it the anchor
 * advanced only at start-up, so whatever a broker appended while serving for months was covered by none:
 * cut off or rewritten, nothing told until a head kept elsewhere was compared. A problem is logged at error
 * level, once per distinct message; the broker keeps serving (the next start refuses).
 *
 * It runs every `intervalSeconds`, soon after each revocation or lift (afterChange), and at stop: a copy of
 * the database taken between two checks and restored later loses what was appended after it, and only what
 * an anchor covers is missed at the next start. Revocations are what such a restore must not silently undo.
 */
export function startRevocationWatch(
  store: { verifyRevocations(options?: AnchoredCheckOptions): Promise<RevocationVerification> },
  options: { anchorKey: () => Buffer; anchorCopy: AnchorCopy; intervalSeconds: number; log: Logger; afterChangeMs?: number; stopCheckMs?: number; anchorRetryMs?: number },
): RevocationWatch {
  const reported = new Set<string>()
  // A full check (the first after a key rotation) hashes the whole log: at shutdown it gets a bounded time.
  const stopping = new AbortController()
  let stopped = false
  let running: Promise<void> | undefined
  let anchorFailing = false
  let retry: NodeJS.Timeout | undefined
  const anchorWritten = (failure: unknown) => {
    if (failure === undefined) {
      if (anchorFailing) options.log.info('audit anchor written into the database again')
      anchorFailing = false
      return
    }
    // The stop's own check is the last one: no retry follows it, so none is promised, and it is said even
    // when earlier failures were (the records since the last written anchor stay uncovered until a start).
    if (stopped) {
      anchorFailing = true
      options.log.warn('could not write the audit anchor into the database at stop; records appended since the last anchor written there are covered by no anchor in the database until the next start checks them', { err: failure })
      return
    }
    if (!anchorFailing) {
      anchorFailing = true
      const retryS = (options.anchorRetryMs ?? ANCHOR_RETRY_MS) / 1000
      options.log.warn(`could not write the audit anchor into the database; the check runs again every ${retryS} s until it is written (records appended meanwhile are covered by the previous anchor only)`, { err: failure })
    }
    if (retry) return
    retry = setTimeout(() => { retry = undefined; void checkAfterRunning() }, options.anchorRetryMs ?? ANCHOR_RETRY_MS)
    retry.unref()
  }
  const check = (): Promise<void> => {
    running ??= assertRevocationsMatchAudit(store, { anchorKey: options.anchorKey(), anchorCopy: options.anchorCopy, signal: stopping.signal, onAnchorWrite: anchorWritten })
      .catch((err: unknown) => {
        if (stopping.signal.aborted) return
        if (!(err instanceof OperatorError && err.code === 'EREVOCATIONS')) {
          options.log.warn('could not check the audit log while serving; will retry', { err })
          return
        }
        const problem = err.message
        if (reported.has(problem)) return
        reported.add(problem)
        options.log.error('the audit log no longer matches what the broker verified while serving; run "audit verify"', { problem })
      })
      .finally(() => { running = undefined })
    return running
  }
  /** A check that starts after everything committed so far: after the one running, which may have read the log before. */
  const checkAfterRunning = async (): Promise<void> => {
    while (running && !stopped) await running
    if (!stopped) await check()
  }
  const timer = setInterval(() => { void check() }, options.intervalSeconds * 1000)
  timer.unref()
  let soon: NodeJS.Timeout | undefined
  const afterChange = () => {
    if (stopped || soon) return
    soon = setTimeout(() => { soon = undefined; void checkAfterRunning() }, options.afterChangeMs ?? AFTER_CHANGE_MS)
    soon.unref()
  }
  const stop = async () => {
    if (stopped) return
    stopped = true
    clearInterval(timer)
    clearTimeout(soon)
    clearTimeout(retry)
    const boundMs = options.stopCheckMs ?? STOP_CHECK_MS
    let bound: NodeJS.Timeout | undefined
    // The signal ends a check between two reads; a read the database never answers (a PostgreSQL server cut
    // off by the network) cannot see it, so the wait ends at the bound too, whatever the check is doing.
    const outOfTime = new Promise<void>((resolve) => {
      bound = setTimeout(() => { stopping.abort(new Error('the broker is stopping')); resolve() }, boundMs)
    })
    const last = (async () => {
      while (running) await running
      if (!stopping.signal.aborted) await check()
    })()
    try {
      await Promise.race([last, outOfTime])
    } finally { clearTimeout(bound) }
    if (stopping.signal.aborted) {
      options.log.warn(`could not anchor the audit log at stop within ${boundMs / 1000} s; records appended since the last check are covered by no anchor`)
    }
    stopping.abort(new Error('the broker is stopping'))
  }
  return { check, afterChange, stop, anchorWritten }
}
