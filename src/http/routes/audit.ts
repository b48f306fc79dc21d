import { Hono, type MiddlewareHandler } from 'hono'
import { z } from 'zod'
import type { AuditEventType, AuditQuery, AuditStore } from '../../audit/audit_log.ts'
import { InvalidRequest } from '../../errors.ts'
import type { AuditAggregates } from '../../audit/aggregate.ts'
import { auditOverview, type AuditOverview } from '../../audit/overview.ts'
import { wireRecord } from '../../audit/record_wire.ts'
import type { Clock } from '../../lib/clock.ts'
import type { LiveWindow } from '../../issuance/pilot_list.ts'
import { parseOrRefuse } from '../zod_refusal.ts'
import { singleValuedQuery } from '../query_params.ts'

const EVENT_TYPES = ['token.issued', 'token.denied', 'token.denied.aggregate', 'token.renewed', 'token.revoked', 'token.unrevoked', 'key.rotated', 'key.reloaded', 'policy.reloaded', 'audit.checkpoint', 'audit.macs_started', 'certificate.issued', 'certificate.denied', 'certificate.revoked', 'credential.registered', 'credential.rotated', 'credential.revoked'] as const satisfies readonly AuditEventType[]

/**
 * Whether an RFC 3339 date-time names a day its month has and an hour and minute a day has (§5.7). Date.parse
 * rolls 02-31 over into March and T24:00 into the next day, so without this a search would cover another
 * range than the one asked for and say nothing.
 */
function onTheCalendar(s: string): boolean {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(s)
  if (!m) return false
  const [y, mo, d, h, mi] = m.slice(1).map(Number) as [number, number, number, number, number]
  const leap = y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0)
  const days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][mo - 1]
  return days !== undefined && d >= 1 && d <= days && h <= 23 && mi <= 59
}

/** Epoch seconds or an RFC 3339 date-time. */
const Instant = z.string().describe('Epoch seconds or an RFC 3339 date-time.').transform((s, ctx) => {
  const n = /^\d{1,12}$/.test(s) ? Number(s) : /^\d{4}-\d{2}-\d{2}T[\d:.]+(Z|[+-]\d{2}:\d{2})$/i.test(s) && onTheCalendar(s) ? Date.parse(s) / 1000 : NaN
  if (!Number.isFinite(n)) { ctx.addIssue({ code: 'custom', message: 'must be epoch seconds or an RFC 3339 date-time' }); return z.NEVER }
  return Math.floor(n)
})
const Text = z.string().min(1).max(512)

/** GET /v1/audit query parameters. */
export const AuditQueryParams = z.object({
  from: Instant.optional(),
  to: Instant.optional(),
  caller: Text.optional(),
  sub: Text.optional(),
  role: Text.optional(),
  jti: Text.optional(),
  site: Text.optional(),
  request_id: Text.optional(),
  decision: z.enum(['allow', 'deny']).optional(),
  type: z.enum(EVENT_TYPES).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  cursor: z.string().min(1).max(64).optional(),
}).strict()

/** GET /v1/audit/summary query parameters. */
export const AuditSummaryParams = z.object({
  from: Instant.optional(),
  to: Instant.optional(),
  bucket: z.enum(['hour', 'day']).default('hour'),
}).strict()

/** Most buckets one summary may span: two weeks of hours, a year of days. */
export const MAX_SUMMARY_BUCKETS = 400
export const BUCKET_SECONDS = { hour: 3600, day: 86400 } as const

/**
 * The overview's time range from optional from/to/bucket: by default the last 24 hours per hour (or 30 days
 * per day); refuses ranges of more than MAX_SUMMARY_BUCKETS buckets.
 */
export function summaryRange(p: { from?: number; to?: number; bucket: 'hour' | 'day' }, now: number): { from: number; to: number; bucketSeconds: number } {
  const bucketSeconds = BUCKET_SECONDS[p.bucket]
  const to = p.to ?? now
  const from = p.from ?? to - (p.bucket === 'hour' ? 24 : 30) * bucketSeconds + 1
  if (from > to) throw new InvalidRequest('from must not be after to')
  if ((to - from) / bucketSeconds > MAX_SUMMARY_BUCKETS) throw new InvalidRequest(`the range spans more than ${MAX_SUMMARY_BUCKETS} buckets; narrow it or use bucket=day`)
  return { from, to, bucketSeconds }
}

/** Admin read access to the audit log: filtered, newest first, keyset-paged; and its summary. */
export function auditRoutes(deps: { audit: Pick<AuditStore, 'query'> & AuditAggregates; auth: MiddlewareHandler; clock: Clock; liveWindow: LiveWindow }): Hono {
  const app = new Hono()
  app.get('/v1/audit/summary', deps.auth, async (c) => {
    const query = parseOrRefuse(AuditSummaryParams, singleValuedQuery(c), 'parameter')
    const now = deps.clock.now()
    const overview: AuditOverview = await auditOverview(deps.audit, { ...summaryRange(query, now), now, maxTokenLifetime: await deps.liveWindow() })
    c.header('Cache-Control', 'no-store')
    return c.json(overview)
  })
  app.get('/v1/audit', deps.auth, async (c) => {
    const p = parseOrRefuse(AuditQueryParams, singleValuedQuery(c), 'parameter')
    const q: AuditQuery = {
      limit: p.limit,
      ...(p.from !== undefined ? { from: p.from } : {}),
      ...(p.to !== undefined ? { to: p.to } : {}),
      ...(p.caller !== undefined ? { caller: p.caller } : {}),
      ...(p.sub !== undefined ? { issuedSub: p.sub } : {}),
      ...(p.role !== undefined ? { role: p.role } : {}),
      ...(p.jti !== undefined ? { jti: p.jti } : {}),
      ...(p.site !== undefined ? { site: p.site } : {}),
      ...(p.request_id !== undefined ? { requestId: p.request_id } : {}),
      ...(p.decision !== undefined ? { decision: p.decision } : {}),
      ...(p.type !== undefined ? { type: p.type } : {}),
      ...(p.cursor !== undefined ? { cursor: p.cursor } : {}),
    }
    const page = await deps.audit.query(q)
    c.header('Cache-Control', 'no-store')
    return c.json({
      records: page.records.map(wireRecord),
      ...(page.nextCursor ? { next_cursor: page.nextCursor } : {}),
    })
  })
  return app
}
