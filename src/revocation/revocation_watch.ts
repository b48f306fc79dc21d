import type { AnchorCopy } from '../audit/anchor.ts'
import { OperatorError } from '../errors.ts'
import type { Logger } from '../lib/logger.ts'
import { assertRevocationsMatchAudit } from './revocation_consistency.ts'
import type { RevocationVerification } from './revocation_consistency.ts'

export interface RevocationWatch {
  /** One check now (the timer's, for tests). Never rejects: problems are logged. */
  check(): Promise<void>
  /** Stops the timer and abandons a check in flight, waiting until it has let go of the store (closed next). */
  stop(): Promise<void>
}

/**
 * The start-up check, repeated while serving: resumes from the sealed anchor (hashing only the records
 * appended since) and seals a new one, in the database and in its copy outside. Without it the anchor
 * advanced only at start-up, so whatever a broker appended while serving for months was covered by none:
 * cut off or rewritten, nothing told until a head kept elsewhere was compared. A problem is logged at error
 * level, once per distinct message; the broker keeps serving (the next start refuses).
 */
export function startRevocationWatch(
  store: { verifyRevocations(options?: { anchorKey?: Buffer; anchorCopy?: AnchorCopy; signal?: AbortSignal }): Promise<RevocationVerification> },
  options: { anchorKey: () => Buffer; anchorCopy: AnchorCopy; intervalSeconds: number; log: Logger },
): RevocationWatch {
  const reported = new Set<string>()
  // A full check (the first after a key rotation) hashes the whole log: at shutdown it is abandoned, not awaited.
  const stopping = new AbortController()
  let running: Promise<void> | undefined
  const check = (): Promise<void> => {
    running ??= assertRevocationsMatchAudit(store, { anchorKey: options.anchorKey(), anchorCopy: options.anchorCopy, signal: stopping.signal })
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
  const timer = setInterval(() => { void check() }, options.intervalSeconds * 1000)
  timer.unref()
  return { check, stop: async () => { clearInterval(timer); stopping.abort(new Error('the broker is stopping')); await running } }
}
