import type { AuditStore, ChainVerification } from '../audit/audit_log.ts'
import { withinMs } from '../lib/within_ms.ts'

export interface ChainStatusView {
  result?: ChainVerification
  /** When `result` was computed (epoch seconds). */
  checkedAt?: number
  running: boolean
}

/**
 * The audit chain's verification for the overview. A full verification reads every record, so it runs
 * at most once per `maxAgeSeconds` (or when an admin asks), in the background, one at a time; a page
 * waits for it only briefly and otherwise shows the previous result.
 */
export class ChainStatus {
  readonly #store: Pick<AuditStore, 'verify'>
  readonly #now: () => number
  readonly #maxAge: number
  #last: { result: ChainVerification; at: number } | undefined
  #running: Promise<void> | undefined

  constructor(store: Pick<AuditStore, 'verify'>, now: () => number, maxAgeSeconds = 300) {
    this.#store = store
    this.#now = now
    this.#maxAge = maxAgeSeconds
  }

  /** The latest result, starting a run when it is missing or older than maxAge (or `force`); waits up to `waitMs`. */
  async view(options: { force?: boolean; waitMs?: number } = {}): Promise<ChainStatusView> {
    const stale = !this.#last || this.#now() - this.#last.at >= this.#maxAge
    if ((stale || options.force) && !this.#running) {
      this.#running = this.#store.verify().then(
        (result) => { this.#last = { result, at: this.#now() } },
        (err: unknown) => { this.#last = { result: { ok: false, records: 0, broken: { seq: 0, reason: `verification failed: ${(err as Error).message}` } }, at: this.#now() } },
      ).finally(() => { this.#running = undefined })
    }
    if (this.#running && (options.waitMs ?? 0) > 0) await withinMs(this.#running, options.waitMs ?? 0)
    return { ...(this.#last ? { result: this.#last.result, checkedAt: this.#last.at } : {}), running: this.#running !== undefined }
  }
}
