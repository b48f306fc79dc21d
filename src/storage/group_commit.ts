import { AuditStoreUnavailable, TemporarilyUnavailable } from '../errors.ts'
import { StoreClosed } from './store_outage.ts'

/**
 * Group commit: concurrent writes share one transaction and one fsync. A write waits for the batch it
 * joined to commit, so the caller still learns of its own durability (fail closed), but N concurrent
 * writers pay for one commit instead of N. With `maxWaitMs` 0 there is no added latency at low load:
 * a batch starts at the next turn of the event loop and takes whatever queued meanwhile; under load the
 * batches grow by themselves while the previous commit is in flight.
 */
export interface GroupCommitOptions<T = unknown> {
  /** Most items in one transaction. */
  maxBatch: number
  /** Wait up to this long for a batch to fill before committing (0: commit at the next event-loop turn). */
  maxWaitMs: number
  /** Items allowed to wait; beyond this `submit` rejects at once rather than queueing without bound. */
  maxPending: number
  /**
   * Whether a batch's failure says the store will not answer the next batch either (a statement timed out on
   * a server that stopped answering): then the writes queued behind it fail with it, unsent, rather than
   * each batch in the queue waiting out the same bound in turn. Absent: a failure fails its own batch only.
   */
  strandsQueue?: (err: unknown) => boolean
  /**
   * Longest a write may wait in the queue for its batch to start (0 or absent: no bound). Past it the write
   * fails unsent (AuditStoreUnavailable: 503, retried), so fail closed holds, rather than waiting out a batch ahead
   * that runs under a longer bound than a request's (a retention prune on a server that stopped answering).
   */
  queueDeadlineMs?: number
  /** Items committed in a batch of their own, never with others: a prune, whose transaction may run long. */
  solo?: (item: T) => boolean
}

/** The options that size and pace the batches; the rest are the backend's. */
type BatchSizes = Omit<GroupCommitOptions, 'strandsQueue' | 'queueDeadlineMs' | 'solo'>

export const DEFAULT_GROUP_COMMIT: BatchSizes = { maxBatch: 1000, maxWaitMs: 0, maxPending: 50_000 }

/**
 * Thrown when the queue is full: the store is slower than the offered load. Overload is the client's
 * cue to come back shortly (503 temporarily_unavailable with Retry-After), not a server fault; the
 * description names no internals, since the HTTP edge shows it to the caller.
 */
export class StoreOverloaded extends TemporarilyUnavailable {
  /** Writes that were waiting when this one was refused (for logs and tests; not shown to clients). */
  readonly pending: number
  constructor(pending: number) {
    super('the broker is busy recording other requests; try again shortly', { retryAfter: 1 })
    this.pending = pending
  }
}

/** Committed batches and items so far (items/batches is the achieved grouping) and writes still waiting. */
export interface CommitStats { batches: number; items: number; pending: number }

/** What a store needs from its write path: durable-on-resolve submission, counters, an orderly close. */
export interface Committer<T> {
  /** Resolves once the transaction holding `item` has committed; rejects if it failed. */
  submit(item: T): Promise<void>
  stats(): CommitStats
  /** Waits for queued writes to finish, then refuses new ones. */
  close(): Promise<void>
  /** Why the write path has stopped for good (e.g. the writer thread died); undefined while it can commit. */
  stopped?(): string | undefined
  /**
   * Hears, once, that the write path has stopped for good while the store was open (not at its close): the
   * moment `stopped()` starts answering. A write path that recovers by itself (a connection pool) never calls it.
   */
  onStopped?: ((reason: string) => void) | undefined
  /** Hears the size of each committed batch (metrics); one call per transaction, never per item. */
  onBatch?: ((items: number) => void) | undefined
}

interface Pending<T> { item: T; resolve: () => void; reject: (err: unknown) => void; /** Date.now() at submit. */ at: number }

export class GroupCommitter<T> implements Committer<T> {
  readonly #commit: (items: T[]) => Promise<void> | void
  readonly #opts: BatchSizes
  readonly #strandsQueue: ((err: unknown) => boolean) | undefined
  readonly #queueDeadlineMs: number
  readonly #solo: ((item: T) => boolean) | undefined
  /** Fires when the oldest queued write reaches its deadline. */
  #deadlineTimer: NodeJS.Timeout | undefined
  #queue: Pending<T>[] = []
  #scheduled = false
  #running = false
  #closed = false
  #idle: Array<() => void> = []
  #batches = 0
  #items = 0
  onBatch: ((items: number) => void) | undefined

  /** `commit` writes all items in one transaction or throws; every item of a failed batch is rejected. */
  constructor(commit: (items: T[]) => Promise<void> | void, options: Partial<GroupCommitOptions<T>> = {}) {
    this.#commit = commit
    const { strandsQueue, queueDeadlineMs, solo, ...sizes } = options
    this.#opts = { ...DEFAULT_GROUP_COMMIT, ...sizes }
    this.#strandsQueue = strandsQueue
    this.#queueDeadlineMs = queueDeadlineMs ?? 0
    this.#solo = solo
    if (this.#opts.maxBatch < 1 || this.#opts.maxPending < 1 || this.#opts.maxWaitMs < 0 || this.#queueDeadlineMs < 0) throw new TypeError('invalid group commit options')
  }

  /** Resolves once the batch holding `item` has committed; rejects if that batch failed. */
  submit(item: T): Promise<void> {
    if (this.#closed) return Promise.reject(new StoreClosed())
    if (this.#queue.length >= this.#opts.maxPending) return Promise.reject(new StoreOverloaded(this.#queue.length))
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject, at: Date.now() })
      this.#armDeadline()
      this.#schedule()
    })
  }

  /** Arms the timer for the oldest queued write's deadline, if there is a bound and none is armed. */
  #armDeadline(): void {
    if (this.#queueDeadlineMs === 0 || this.#deadlineTimer !== undefined || this.#queue.length === 0) return
    const due = this.#queue[0]!.at + this.#queueDeadlineMs - Date.now()
    this.#deadlineTimer = setTimeout(() => { this.#deadlineTimer = undefined; this.#expire() }, Math.max(0, due))
    // A queue that waits on its batch keeps the process alive by the batch, not by this timer.
    this.#deadlineTimer.unref()
  }

  /** Fails, unsent, the writes that waited past the deadline (the oldest are first in the queue). */
  #expire(): void {
    const now = Date.now()
    let n = 0
    while (n < this.#queue.length && now - this.#queue[n]!.at >= this.#queueDeadlineMs) n++
    const expired = this.#queue.splice(0, n)
    if (expired.length === 0) { this.#armDeadline(); return }
    // An outage, not overload: the batch ahead has held the store for the whole bound. One error each: each
    // refusal is logged once, by whoever answers it (AuditStoreUnavailable.logged).
    const why = `waited ${this.#queueDeadlineMs} ms for the batch ahead of it to finish`
    for (const p of expired) p.reject(new AuditStoreUnavailable(new Error(why)))
    this.#armDeadline()
  }

  /** The next batch off the queue: up to maxBatch items, cut so that a solo item goes alone. */
  #take(): Pending<T>[] {
    let n = Math.min(this.#queue.length, this.#opts.maxBatch)
    // Only the batch's own items are looked at, not the whole queue (up to max_pending).
    const solo = this.#solo
    if (solo) {
      for (let i = 0; i < n; i++) if (solo(this.#queue[i]!.item)) { n = Math.max(i, 1); break }
    }
    const batch = this.#queue.splice(0, n)
    // The old timer may be for a write now in the batch; re-armed for the oldest still waiting.
    if (batch.length > 0 && this.#deadlineTimer !== undefined) { clearTimeout(this.#deadlineTimer); this.#deadlineTimer = undefined; this.#armDeadline() }
    return batch
  }

  #schedule(): void {
    if (this.#scheduled || this.#running) return
    this.#scheduled = true
    const run = () => { this.#scheduled = false; void this.#drain() }
    if (this.#opts.maxWaitMs > 0 && this.#queue.length < this.#opts.maxBatch) setTimeout(run, this.#opts.maxWaitMs)
    else setImmediate(run)
  }

  async #drain(): Promise<void> {
    this.#running = true
    try {
      let batch = this.#take()
      let outcome = this.#start(batch)
      while (batch.length > 0) {
        const result = await outcome
        const stranded = !result.ok && this.#strandsQueue?.(result.err) === true ? this.#queue.splice(0) : []
        if (stranded.length > 0 && this.#deadlineTimer !== undefined) { clearTimeout(this.#deadlineTimer); this.#deadlineTimer = undefined }
        // Hand the next batch (what queued during this commit) to the backend before settling this one:
        // a writer thread starts its transaction at once instead of idling while this event-loop turn
        // writes the responses and reads new requests (about 1 ms per commit under load, npm run bench).
        const next = this.#take()
        outcome = this.#start(next)
        if (result.ok) {
          this.#batches++
          this.#items += batch.length
          this.onBatch?.(batch.length)
          for (const p of batch) p.resolve()
        } else {
          for (const p of batch) p.reject(result.err)
          for (const p of stranded) p.reject(result.err)
        }
        batch = next
      }
    } finally {
      this.#running = false
      if (this.#queue.length > 0) this.#schedule()
      else for (const f of this.#idle.splice(0)) f()
    }
  }

  /** Starts committing `batch` (nothing when empty); never rejects, so a failure is settled in order. */
  #start(batch: Pending<T>[]): Promise<{ ok: true } | { ok: false; err: unknown }> {
    if (batch.length === 0) return Promise.resolve({ ok: true })
    try {
      return Promise.resolve(this.#commit(batch.map((p) => p.item))).then(() => ({ ok: true as const }), (err: unknown) => ({ ok: false as const, err }))
    } catch (err) {
      return Promise.resolve({ ok: false, err })
    }
  }

  stats(): CommitStats {
    return { batches: this.#batches, items: this.#items, pending: this.#queue.length }
  }

  async close(): Promise<void> {
    this.#closed = true
    if (this.#queue.length === 0 && !this.#running && !this.#scheduled) return
    await new Promise<void>((r) => this.#idle.push(r))
  }
}
