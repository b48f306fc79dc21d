import { createHash } from 'node:crypto'
import { BurstyRateLimiter, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible'
import { quote } from '../lib/quote.ts'
import { addressKeyer } from './address_key.ts'
import type { Limit, RateLimitsConfig } from './rate_limit_config.ts'

export type LimitKind = 'caller' | 'role' | 'address' | 'registration'

/** A request a limit refused. */
export interface LimitRefusal {
  limit: LimitKind
  /** Whole seconds, at least 1, until the limit admits a request again. */
  retryAfter: number
  /** For the client and the audit record; caller input in it is quoted. */
  description: string
  /**
   * True for the first refusal of this caller (or role) by this limit within an audit window: it gets its
   * own record. The rest of the window's refusals are only counted, so a caller hammering a limit cannot
   * write one audit record per refused request.
   */
  record: boolean
}

/** Builds the rate-limiter-flexible counter behind one window: the store decides where it counts. */
export type CounterFactory = (o: { points: number; duration: number; keyPrefix: string }) => RateLimiterAbstract

/** Distinct keys remembered for audit windows and address blocks; beyond it a refusal is only counted. */
export const MAX_REMEMBERED_KEYS = 4096

/**
 * One limit as a bucket: the steady window, and the burst reserve behind it when configured. `consume`
 * resolves to undefined when the request is admitted, else to the milliseconds before the limit admits one
 * again; `onExhausted` hears of an admitted request that used the last of a limit without a reserve.
 */
interface Bucket {
  limit: Limit
  consume(key: string, onExhausted?: (msBeforeNext: number) => void): Promise<number | undefined>
}

function bucketOf(limit: Limit, keyPrefix: string, counter: CounterFactory): Bucket | undefined {
  if (limit.requests === 0) return undefined
  const steady = counter({ points: limit.requests, duration: limit.per, keyPrefix })
  const limiter = limit.burst > 0
    ? new BurstyRateLimiter(steady, counter({ points: limit.burst, duration: limit.burst_per, keyPrefix: `${keyPrefix}.burst` }))
    : steady
  return {
    limit,
    async consume(key, onExhausted) {
      try {
        const res = await limiter.consume(key)
        if (onExhausted && limit.burst === 0 && res.remainingPoints === 0) onExhausted(res.msBeforeNext)
        return undefined
      } catch (err) {
        // A RateLimiterRes is a refusal; anything else is a fault (the store's, with no insurance) and propagates.
        if (err instanceof RateLimiterRes) return err.msBeforeNext
        throw err
      }
    },
  }
}

/**
 * In a database, keys are digests: they fit its column whatever the issuer or role is, and name nobody in
 * it. In memory the plain text does (a digest would cost more than the rest of the check: about 4 µs).
 */
function digestKey(...parts: string[]): string {
  return createHash('sha256').update(parts.join('\n')).digest('base64url')
}
const plainKey = (...parts: string[]) => parts.join('\n')

const secondsOf = (ms: number) => Math.max(1, Math.ceil(ms / 1000))
const rate = (l: Limit) => `at most ${l.requests} per ${l.per} s${l.burst > 0 ? ` (plus ${l.burst} per ${l.burst_per} s in bursts)` : ''}`

/**
 * The rate limits on POST /token, POST /v1/certificates (one set of counters for both) and job-credential registration. Caller, role and registration limits count in `counter`'s store (memory, or the
 * PostgreSQL table replicas share); the address limit always counts in this process's memory.
 */
export class RequestLimits {
  readonly #caller: Bucket | undefined
  readonly #role: Bucket | undefined
  readonly #roles: Map<string, Bucket>
  readonly #address: Bucket | undefined
  readonly #registration: Bucket | undefined
  readonly #auditWindowMs: number
  /** Address → epoch ms until which it is refused without counting: a sync look-up on the hot path. */
  readonly #blockedAddresses = new Map<string, number>()
  /** Limit and key → epoch ms until which further refusals are counted, not recorded. */
  readonly #recordedUntil = new Map<string, number>()
  readonly #keyOf: (...parts: string[]) => string
  /** The client address → what the address limit counts it under (an IPv6 address: its prefix). */
  readonly #addressKey: (address: string) => string

  /** `digestKeys`: the shared store is a database, whose keys should be digests. */
  constructor(config: RateLimitsConfig, stores: { shared: CounterFactory; local: CounterFactory }, options: { auditWindowSeconds: number; digestKeys?: boolean }) {
    this.#keyOf = options.digestKeys ? digestKey : plainKey
    this.#caller = bucketOf(config.caller, 'caller', stores.shared)
    this.#role = bucketOf(config.role, 'role', stores.shared)
    this.#roles = new Map()
    for (const [name, limit] of Object.entries(config.roles)) {
      const b = bucketOf(limit, `role.${digestKey(name)}`, stores.shared)
      // requests: 0 for a role exempts it from `role`.
      this.#roles.set(name, b ?? { limit, consume: async () => undefined })
    }
    this.#address = bucketOf(config.address, 'address', stores.local)
    this.#registration = bucketOf(config.registration, 'registration', stores.shared)
    this.#addressKey = addressKeyer(config.address.ipv6_prefix)
    this.#auditWindowMs = options.auditWindowSeconds * 1000
  }

  /** True when a caller or role limit is configured: otherwise `admit` need not be called at all. */
  get limitsCallers(): boolean {
    return this.#caller !== undefined || this.#role !== undefined || this.#roles.size > 0
  }

  /**
   * Before anything of the request is read: refuses an address whose refused unauthenticated requests
   * are over the address limit. A map look-up, no promise.
   */
  blockedAddress(address: string | undefined): LimitRefusal | undefined {
    // Every request asks: with nothing blocked, the address is not even keyed.
    if (address === undefined || this.#blockedAddresses.size === 0) return undefined
    const key = this.#addressKey(address)
    const until = this.#blockedAddresses.get(key)
    if (until === undefined) return undefined
    const left = until - Date.now()
    if (left <= 0) {
      this.#blockedAddresses.delete(key)
      return undefined
    }
    const retryAfter = secondsOf(left)
    return { limit: 'address', retryAfter, record: false, description: `too many refused requests from this address; retry after ${retryAfter} s` }
  }

  /**
   * Counts a refused unauthenticated request against its address; the refusal that uses up the limit
   * blocks the address until its window ends (so with a limit of N, request N+1 is the first 429).
   */
  noteRefused(address: string | undefined): void {
    const bucket = this.#address
    if (bucket === undefined || address === undefined) return
    const key = this.#addressKey(address)
    const block = (ms: number) => {
      if (this.#blockedAddresses.size >= MAX_REMEMBERED_KEYS) pruneExpired(this.#blockedAddresses, Date.now())
      if (this.#blockedAddresses.size < MAX_REMEMBERED_KEYS) this.#blockedAddresses.set(key, Date.now() + ms)
    }
    void bucket.consume(key, block).then((ms) => { if (ms !== undefined) block(ms) }, () => undefined)
  }

  /**
   * Takes one request from the verified caller's allowance and then, when the role is known, from the
   * role's. In that order, one after the other: a caller already over its own limit must not use up the
   * role's allowance that other callers share.
   */
  async admit(caller: { iss: string; sub: string }, role: string | undefined): Promise<LimitRefusal | undefined> {
    if (this.#caller) {
      const key = this.#keyOf(caller.iss, caller.sub)
      const ms = await this.#caller.consume(key)
      if (ms !== undefined) {
        const retryAfter = secondsOf(ms)
        return {
          limit: 'caller', retryAfter, record: this.#shouldRecord(`caller:${key}`, ms),
          description: `too many requests from this caller: ${rate(this.#caller.limit)}; retry after ${retryAfter} s`,
        }
      }
    }
    return role === undefined ? undefined : this.admitRole(role)
  }

  /**
   * Takes one request from the role's allowance (its own under `roles`, else `role`). The exchange asks
   * only once the policy has granted the role: the role comes from the request, and a caller refused it
   * must neither use up what the role's callers share nor make a counter of a name of its choosing.
   */
  async admitRole(role: string): Promise<LimitRefusal | undefined> {
    const bucket = this.#roles.get(role) ?? this.#role
    if (bucket) {
      const key = this.#keyOf(role)
      const ms = await bucket.consume(key)
      if (ms !== undefined) {
        const retryAfter = secondsOf(ms)
        return {
          limit: 'role', retryAfter, record: this.#shouldRecord(`role:${key}`, ms),
          description: `too many requests for role ${quote(role)}: ${rate(bucket.limit)}; retry after ${retryAfter} s`,
        }
      }
    }
    return undefined
  }

  /**
   * Takes one job-credential registration from the verified caller's registration allowance. Apart from
   * `caller`: a registration costs IAM an exchange and the store a row, so it has a limit of its own,
   * on by default, and registering does not use up what the caller may ask of POST /token.
   */
  async admitRegistration(caller: { iss: string; sub: string }): Promise<LimitRefusal | undefined> {
    if (!this.#registration) return undefined
    const key = this.#keyOf(caller.iss, caller.sub)
    const ms = await this.#registration.consume(key)
    if (ms === undefined) return undefined
    const retryAfter = secondsOf(ms)
    return {
      limit: 'registration', retryAfter, record: this.#shouldRecord(`registration:${key}`, ms),
      description: `too many credential registrations from this caller: ${rate(this.#registration.limit)}; retry after ${retryAfter} s`,
    }
  }

  /** The first refusal of a key in an audit window (or until its limit admits again, if longer) is recorded. */
  #shouldRecord(key: string, retryMs: number): boolean {
    const now = Date.now()
    const until = this.#recordedUntil.get(key)
    if (until !== undefined && until > now) return false
    if (this.#recordedUntil.size >= MAX_REMEMBERED_KEYS) pruneExpired(this.#recordedUntil, now)
    if (this.#recordedUntil.size >= MAX_REMEMBERED_KEYS) return false
    this.#recordedUntil.set(key, now + Math.max(retryMs, this.#auditWindowMs))
    return true
  }
}

function pruneExpired(m: Map<string, number>, now: number): void {
  for (const [k, until] of m) if (until <= now) m.delete(k)
}
