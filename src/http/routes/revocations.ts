import { Hono, type MiddlewareHandler } from 'hono'
import { z } from 'zod'
import { InvalidRequest, NotFound } from '../../errors.ts'
import { clientAddress } from '../client_address.ts'
import { limitBody } from '../middleware/body_limit.ts'
import { condorConfigSnippet } from '../../revocation/condor_expression.ts'
import { REVOCATION_ID, REVOCATION_KINDS, type Revocation } from '../../revocation/revocation.ts'
import type { RevocationService } from '../../revocation/revocation_service.ts'
import { parseOrRefuse } from '../zod_refusal.ts'
import { singleValuedQuery } from '../query_params.ts'

/**
 * A revocation body is one selector, a reason of at most 500 characters and a few flags: well under 1 KiB.
 * Admin-only, but a runaway admin script must not make the broker buffer whatever it streams.
 */
const MAX_BODY = 16 * 1024

/** POST /v1/revocations body: exactly one selector. */
export const RevocationBody = z.object({
  jti: z.string().optional(),
  sub: z.string().optional(),
  role: z.string().optional(),
  site: z.string().optional(),
  client: z.string().optional(),
  /** `SITE:JOBID`: every pilot token of one SLURM job. */
  'pilot-job': z.string().optional(),
  /** The jti of a pilot enrolment credential: every pilot token of that enrolment (ctb_enrolment). */
  'pilot-enrolment': z.string().optional(),
  /** For sub and client: the trusted IAM issuer; absent means that sub or client at every trusted issuer. */
  iss: z.string().optional(),
  reason: z.string().max(500).optional(),
  /** For jti only: the token's exp, when the audit log does not know it. */
  exp: z.number().int().nonnegative().optional()
    .describe('For jti only (400 invalid_request with any other kind): the token\'s exp in epoch seconds, when the audit log does not know it. More than 60 s in the past (the clock skew allowed) is 400 invalid_request (the token has expired), unless the audit log records a later exp the token still lives to (the entry is held until that one) or the jti is a pilot enrolment credential\'s.'),
  /** Count the live tokens the revocation would match; store nothing. */
  dry_run: z.boolean().optional(),
}).strict()

type Service = Pick<RevocationService, 'revoke' | 'lift' | 'preview' | 'list' | 'condorExpression'>

/** DELETE /v1/revocations/{id} body, optional. */
export const LiftBody = z.object({ reason: z.string().max(500).optional() }).strict()

/** DELETE /v1/revocations/{id} path: an id that cannot name a revocation is a 404, not a 400. */
export const RevocationIdParam = z.object({ id: z.string().regex(REVOCATION_ID).describe('The revocation id (a positive integer).') })

/** GET /v1/revocations query: `all=true` includes lifted and expired entries. Others are ignored. */
export const RevocationListQuery = z.object({
  all: z.enum(['true', 'false'], { error: 'all must be true or false' }).optional(),
})

/** GET /v1/revocations/condor query: the HTCondor config snippet (default) or JSON. Others are ignored. */
export const CondorExpressionQuery = z.object({
  format: z.enum(['config', 'json'], { error: 'format must be config or json' }).default('config'),
})

/** The first issue of a failed query parse, as the message the schema carries. */
function queryOf<T>(schema: z.ZodType<T>, input: unknown): T {
  const parsed = schema.safeParse(input)
  if (!parsed.success) throw new InvalidRequest(parsed.error.issues[0]!.message)
  return parsed.data
}

/** Admin revocation API; the service does the work, these only translate HTTP. */
export function revocationRoutes(deps: { revocations: Service; auth: MiddlewareHandler }): Hono {
  const app = new Hono()
  app.use('/v1/revocations', deps.auth)
  app.use('/v1/revocations/*', deps.auth)

  app.post('/v1/revocations', limitBody(MAX_BODY), async (c) => {
    if (!/^application\/json\b/i.test(c.req.header('content-type') ?? '')) throw new InvalidRequest('Content-Type must be application/json')
    let raw: unknown
    try { raw = await c.req.json() } catch { throw new InvalidRequest('body is not valid JSON') }
    const b = parseOrRefuse(RevocationBody, raw, 'field')
    const selectors = REVOCATION_KINDS.filter((k) => b[k] !== undefined)
    if (selectors.length !== 1) throw new InvalidRequest(`give exactly one of ${REVOCATION_KINDS.join(', ')}`)
    const kind = selectors[0]!
    const req = { kind, value: b[kind]!, ...(b.reason !== undefined ? { reason: b.reason } : {}), ...(b.exp !== undefined ? { exp: b.exp } : {}), ...(b.iss !== undefined ? { iss: b.iss } : {}) }
    c.header('Cache-Control', 'no-store')
    if (b.dry_run) return c.json({ dry_run: { kind, value: req.value, live_tokens: (await deps.revocations.preview(req)).liveTokens } })
    const rev = await deps.revocations.revoke(
      req,
      { principal: c.get('admin').id, requestId: c.get('requestId'), ...clientAddress(c) },
    )
    return c.json({ revocation: wire(rev) }, 201)
  })

  // Lifts an entry before its until; audited (token.unrevoked) in the same transaction.
  app.delete('/v1/revocations/:id', limitBody(MAX_BODY), async (c) => {
    const idText = c.req.param('id')
    if (!RevocationIdParam.safeParse({ id: idText }).success) throw new NotFound('no such revocation: ids are positive integers (see GET /v1/revocations?all=true)')
    let reason: string | undefined
    const text = await c.req.text()
    if (text.trim() !== '') {
      if (!/^application\/json\b/i.test(c.req.header('content-type') ?? '')) throw new InvalidRequest('Content-Type must be application/json')
      let raw: unknown
      try { raw = JSON.parse(text) } catch { throw new InvalidRequest('body is not valid JSON') }
      reason = parseOrRefuse(LiftBody, raw, 'field').reason
    }
    const rev = await deps.revocations.lift(Number(idText), reason !== undefined ? { reason } : {},
      { principal: c.get('admin').id, requestId: c.get('requestId'), ...clientAddress(c) })
    c.header('Cache-Control', 'no-store')
    return c.json({ revocation: wire(rev) })
  })

  app.get('/v1/revocations', async (c) => {
    const { all } = queryOf(RevocationListQuery, { all: singleValuedQuery(c).all })
    const list = await deps.revocations.list({ all: all === 'true' })
    c.header('Cache-Control', 'no-store')
    return c.json({ revocations: list.map(wire) })
  })

  app.get('/v1/revocations/condor', async (c) => {
    const { format } = queryOf(CondorExpressionQuery, { format: singleValuedQuery(c).format })
    const { expr, clauses, unexpressed, generatedAt } = await deps.revocations.condorExpression()
    c.header('Cache-Control', 'no-store')
    if (format === 'json') return c.json({ expr, clauses, unexpressed, generated_at: generatedAt, config_line: `SEC_TOKEN_REVOCATION_EXPR = ${expr}` })
    return c.text(condorConfigSnippet(expr, clauses, generatedAt, unexpressed), 200, { 'Content-Type': 'text/plain; charset=utf-8' })
  })
  return app
}

function wire(r: Revocation) {
  return {
    id: r.id, kind: r.kind, value: r.value, revoked_at: r.revokedAt, until: r.until,
    ...(r.gen !== undefined ? { gen: r.gen } : {}), ...(r.reason !== undefined ? { reason: r.reason } : {}),
    ...(r.revokedBy !== undefined ? { revoked_by: r.revokedBy } : {}),
    ...(r.iss !== undefined ? { iss: r.iss } : {}),
    ...(r.liftedAt !== undefined ? { lifted_at: r.liftedAt } : {}),
    ...(r.liftedBy !== undefined ? { lifted_by: r.liftedBy } : {}),
  }
}
