import { z } from 'zod'
import { integer, seconds } from '../lib/config_values.ts'

/**
 * One limit: `requests` per `per` seconds, plus an optional reserve of `burst` requests per `burst_per`
 * seconds that is spent only once the steady allowance is used up. This is rate-limiter-flexible's
 * bursty arrangement of two fixed windows, its way of giving token-bucket behaviour (a steady rate with
 * room for bursts) on stores that only keep counters, PostgreSQL included. `requests: 0` turns the limit off.
 */
export function limitSchema(defaults: { requests: number; per: number } = { requests: 0, per: 60 }) {
  return z.strictObject(limitFields(defaults)).superRefine(checkLimit)
}

function limitFields(defaults: { requests: number; per: number }) {
  return {
    requests: integer(0, 1_000_000).default(defaults.requests),
    per: seconds({ min: 1, max: 86_400 }).default(defaults.per),
    burst: integer(0, 1_000_000).default(0),
    burst_per: seconds({ min: 1, max: 86_400 }).default(600),
  }
}

function checkLimit(l: { requests: number; per: number; burst: number; burst_per: number }, ctx: z.RefinementCtx): void {
  if (l.burst > 0 && l.burst_per < l.per) {
    ctx.addIssue({ code: 'custom', path: ['burst_per'], message: 'must not be shorter than per (the reserve refills more slowly than the steady allowance)' })
  }
  if (l.requests === 0 && l.burst > 0) {
    ctx.addIssue({ code: 'custom', path: ['burst'], message: 'needs requests above 0 (requests: 0 turns the limit off)' })
  }
}

/**
 * The address limit, plus how IPv6 clients are counted: by their first `ipv6_prefix` bits (address_key.ts).
 * 64 by default, the least any IPv6 end site is given; 128 counts each address; below 32 whole providers
 * would share one count, so it is refused.
 */
const AddressLimitSchema = z.strictObject({
  ...limitFields({ requests: 0, per: 10 }),
  ipv6_prefix: integer(32, 128).default(64),
}).superRefine(checkLimit)

const LimitSchema = limitSchema()
export type Limit = z.infer<typeof LimitSchema>

/**
 * `rate_limits:` section (docs/rate-limits.md). Every limit is off until configured, so nothing legitimate
 * is ever throttled by default: a pilot factory may rightly ask for thousands of tokens an hour and only
 * the site knows how many, and the address limit would refuse every client behind a NAT gateway or proxy
 * once one of them misbehaves (unauthenticated garbage is already cheap: it is counted, not audited).
 */
export const RateLimitsConfigSchema = z.strictObject({
  /**
   * Where caller and role counters live. auto: PostgreSQL when audit.store is postgres (limits hold across
   * replicas), memory otherwise. memory: each replica counts on its own. postgres: the audit database.
   */
  store: z.enum(['auto', 'memory', 'postgres']).default('auto'),
  /** Requests of one IAM identity (issuer and subject, after verification), whatever it asks for. */
  caller: LimitSchema.prefault({}),
  /** Granted requests for one role, all callers together; `roles` gives a role its own limit instead. */
  role: LimitSchema.prefault({}),
  /** Per-role limits, by role name, replacing `role` for that role. */
  roles: z.record(z.string().min(1), LimitSchema).default({}),
  /**
   * Job-credential registrations (POST /v1/credentials) of one IAM identity. Each costs a token exchange
   * at IAM, a row, and a refresh token kept fresh there, and a user's submits register only when the
   * credd holds nothing yet: on by default, at a rate no submitting user reaches.
   */
  registration: limitSchema({ requests: 100, per: 3600 }).prefault({}),
  /**
   * Refused unauthenticated requests (unreadable body, a subject token that does not verify) from one client
   * address. Once used up, the address is refused with 429 before its body is read or IAM asked; requests
   * that verify never count. Always kept in each replica's memory: it guards this replica's own IAM calls.
   */
  address: AddressLimitSchema.prefault({}),
  postgres: z.strictObject({
    /** Connections for the rate-limit table, apart from the audit store's pool. */
    pool_size: integer(1, 100).default(2),
    /** A store that does not answer within this falls back to each replica's memory (see docs/rate-limits.md). */
    timeout_ms: integer(10, 10_000).default(250),
  }).prefault({}),
})

export type RateLimitsConfig = z.infer<typeof RateLimitsConfigSchema>
