import { Hono, type MiddlewareHandler } from 'hono'
import { z } from 'zod'
import type { AuditEventType, AuditQuery, AuditStore } from '../../audit/audit_log.ts'
import { InvalidRequest } from '../../errors.ts'

const EVENT_TYPES = ['token.issued', 'token.denied', 'token.denied.aggregate', 'token.renewed', 'token.revoked', 'token.unrevoked', 'key.rotated', 'key.reloaded', 'policy.reloaded', 'audit.checkpoint', 'credential.registered', 'credential.rotated', 'credential.revoked'] as const satisfies readonly AuditEventType[]

/** Epoch seconds or an RFC 3339 date-time. */
const Instant = z.string().transform((s, ctx) => {
  const n = /^\d{1,12}$/.test(s) ? Number(s) : /^\d{4}-\d{2}-\d{2}T[\d:.]+(Z|[+-]\d{2}:\d{2})$/i.test(s) ? Date.parse(s) / 1000 : NaN
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
  decision: z.enum(['allow', 'deny']).optional(),
  type: z.enum(EVENT_TYPES).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  cursor: z.string().min(1).max(64).optional(),
}).strict()

/** Admin read access to the audit log: filtered, newest first, keyset-paged. */
export function auditRoutes(deps: { audit: Pick<AuditStore, 'query'>; auth: MiddlewareHandler }): Hono {
  const app = new Hono()
  app.get('/v1/audit', deps.auth, async (c) => {
    const parsed = AuditQueryParams.safeParse(c.req.query())
    if (!parsed.success) {
      const i = parsed.error.issues[0]!
      throw new InvalidRequest(i.code === 'unrecognized_keys' ? `unknown parameter ${(i as { keys: string[] }).keys[0]}` : `${i.path.join('.')}: ${i.message}`)
    }
    const p = parsed.data
    const q: AuditQuery = {
      limit: p.limit,
      ...(p.from !== undefined ? { from: p.from } : {}),
      ...(p.to !== undefined ? { to: p.to } : {}),
      ...(p.caller !== undefined ? { caller: p.caller } : {}),
      ...(p.sub !== undefined ? { issuedSub: p.sub } : {}),
      ...(p.role !== undefined ? { role: p.role } : {}),
      ...(p.jti !== undefined ? { jti: p.jti } : {}),
      ...(p.site !== undefined ? { site: p.site } : {}),
      ...(p.decision !== undefined ? { decision: p.decision } : {}),
      ...(p.type !== undefined ? { type: p.type } : {}),
      ...(p.cursor !== undefined ? { cursor: p.cursor } : {}),
    }
    const page = await deps.audit.query(q)
    c.header('Cache-Control', 'no-store')
    return c.json({
      records: page.records.map((r) => ({ seq: r.seq, hash: r.hash, prev_hash: r.prevHash, event: r.event })),
      ...(page.nextCursor ? { next_cursor: page.nextCursor } : {}),
    })
  })
  return app
}
