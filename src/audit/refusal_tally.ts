import type { AuditEvent, AuditLog } from './audit_log.ts'
import type { Clock } from '../lib/clock.ts'
import type { Logger } from '../lib/logger.ts'

/** Distinct client addresses remembered between flushes; the rest are only counted. Bounds memory under a spoofed-source flood. */
export const MAX_TRACKED_CLIENTS = 1024
/** Client addresses named in one aggregate record, most frequent first. */
export const TOP_CLIENTS = 10

export interface RefusalTallyDeps {
  audit: AuditLog
  clock: Clock
  log: Logger
  /**
   * True while the audit queue is too full to take a record that no caller waits for: the flush is then
   * skipped and its counts carried into the next one, so the aggregate never displaces an issuance.
   */
  busy?: () => boolean
  /**
   * The client a peer address is counted as (ratelimit/address_key.ts): an IPv6 host can send each request
   * from a new address of its /64, and counted per address it would fill the tracked slots with entries of
   * one refusal each, hiding itself and every other source. Default: the address itself.
   */
  clientOf?: (address: string) => string
}

/** The `detail` of a `token.denied.aggregate` record. */
export interface RefusalAggregateDetail {
  count: number
  /** OAuth error code → refusals. */
  byError: Record<string, number>
  /** Epoch seconds of the first and last refusal counted. */
  first: number
  last: number
  /** The most frequent client addresses, at most TOP_CLIENTS. */
  topClients: Array<{ address: string; count: number }>
  /** Refusals not in topClients: from other addresses, untracked ones (beyond MAX_TRACKED_CLIENTS distinct) or none known. */
  otherClients: number
}

/**
 * Refusals of unauthenticated requests: nobody could be identified (the body could not be read, or the
 * subject token did not verify). Recording each one durably would let anyone fill the audit queue with
 * garbage and starve real issuances, and would tell an auditor nothing a count does not. So they are
 * counted in memory and written now and then as one `token.denied.aggregate` record.
 * Refusals of a verified caller are recorded one by one instead (exchange.ts).
 */
export class RefusalTally {
  readonly #deps: RefusalTallyDeps
  #count = 0
  #byError = new Map<string, number>()
  #clients = new Map<string, number>()
  #first = 0
  #last = 0
  #flushing: Promise<void> | undefined

  constructor(deps: RefusalTallyDeps) {
    this.#deps = deps
  }

  /** Counts one refusal; O(1), never touches the store. */
  note(error: string, clientAddress: string | undefined): void {
    const now = this.#deps.clock.now()
    if (this.#count === 0) this.#first = now
    this.#last = now
    this.#count++
    this.#byError.set(error, (this.#byError.get(error) ?? 0) + 1)
    const client = clientAddress !== undefined && this.#deps.clientOf ? this.#deps.clientOf(clientAddress) : clientAddress
    const known = client !== undefined ? this.#clients.get(client) : undefined
    // Beyond MAX_TRACKED_CLIENTS distinct clients a refusal is only counted (it shows in otherClients).
    if (client !== undefined && (known !== undefined || this.#clients.size < MAX_TRACKED_CLIENTS)) {
      this.#clients.set(client, (known ?? 0) + 1)
    }
  }

  /** Refusals counted and not yet written. */
  get pending(): number {
    return this.#count
  }

  /**
   * Writes what was counted as one record and starts a new count. When the store is busy or refuses,
   * the counts are kept and merged into the next flush; `force` (at shutdown) ignores `busy`.
   */
  flush(options: { force?: boolean } = {}): Promise<void> {
    this.#flushing ??= this.#flush(options.force ?? false).finally(() => { this.#flushing = undefined })
    return this.#flushing
  }

  async #flush(force: boolean): Promise<void> {
    if (this.#count === 0 || (!force && this.#deps.busy?.())) return
    const taken = this.#take()
    const event: AuditEvent = {
      type: 'token.denied.aggregate',
      time: this.#deps.clock.now(),
      decision: 'deny',
      reason: `${taken.count} unauthenticated requests refused`,
      detail: { ...taken },
    }
    try {
      await this.#deps.audit.record(event)
    } catch (err) {
      this.#putBack(taken)
      this.#deps.log.warn('could not write the aggregate of unauthenticated refusals; keeping the counts for the next flush', { err, count: taken.count })
    }
  }

  #take(): RefusalAggregateDetail {
    const topClients = [...this.#clients].sort((a, b) => b[1] - a[1]).slice(0, TOP_CLIENTS).map(([address, count]) => ({ address, count }))
    const detail: RefusalAggregateDetail = {
      count: this.#count,
      byError: Object.fromEntries([...this.#byError].sort((a, b) => a[0].localeCompare(b[0]))),
      first: this.#first,
      last: this.#last,
      topClients,
      otherClients: this.#count - topClients.reduce((n, c) => n + c.count, 0),
    }
    this.#count = 0
    this.#byError = new Map()
    this.#clients = new Map()
    return detail
  }

  /** Puts an unwritten aggregate back: counts add up; of the client breakdown only the top entries survive. */
  #putBack(d: RefusalAggregateDetail): void {
    if (this.#count === 0) this.#first = d.first
    else this.#first = Math.min(this.#first, d.first)
    this.#last = Math.max(this.#last, d.last)
    this.#count += d.count
    for (const [error, n] of Object.entries(d.byError)) this.#byError.set(error, (this.#byError.get(error) ?? 0) + n)
    for (const { address, count } of d.topClients) {
      const known = this.#clients.get(address)
      if (known !== undefined || this.#clients.size < MAX_TRACKED_CLIENTS) this.#clients.set(address, (known ?? 0) + count)
    }
  }

  /**
   * Flushes every `intervalSeconds` until the returned function is called; that function stops the timer
   * and writes what is left (shutdown), before the store closes.
   */
  start(intervalSeconds: number): () => Promise<void> {
    const timer = setInterval(() => { void this.flush() }, intervalSeconds * 1000)
    timer.unref()
    return async () => {
      clearInterval(timer)
      await this.flush()
      await this.flush({ force: true })
    }
  }
}
