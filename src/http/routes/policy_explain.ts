import { Hono, type MiddlewareHandler } from 'hono'
import { z } from 'zod'
import { InvalidRequest } from '../../errors.ts'
import type { Policy } from '../../policy/compile.ts'
import type { DecisionRequest } from '../../policy/decision.ts'
import { explain } from '../../policy/explain.ts'
import { limitBody } from '../middleware/body_limit.ts'

/** Anything that hands out the policy in force (a PolicyHolder). */
export interface PolicySource {
  readonly current: Policy
}

const Name = z.string().min(1).max(1024)

/**
 * The console's explain form is held to the same bound (its forms, 64 KiB): room for hundreds of IAM groups.
 * Admin-only, but a runaway admin script must not make the broker buffer whatever it streams.
 */
const MAX_BODY = 64 * 1024

/** The request to explain: the caller as IAM would describe it, and what it asks the broker for. */
export const ExplainBody = z.strictObject({
  subject: z.strictObject({
    iss: Name,
    sub: Name,
    client_id: Name.optional(),
    groups: z.array(Name).max(256).default([]),
    scopes: z.array(Name).max(256).default([]),
    preferred_username: Name.optional(),
  }),
  role: z.string().min(1).max(64),
  token_type: z.enum(['idtoken', 'scitoken', 'access_token']).optional(),
  audience: z.union([Name, z.array(Name).max(32)]).optional(),
  /** Space-separated, as in POST /token. */
  scope: z.string().max(2048).optional(),
  lifetime: z.number().int().positive().optional(),
  host: z.string().min(1).max(253).optional(),
  params: z.record(z.string().max(32), z.string().max(128)).optional(),
})

/**
 * `POST /admin/policy/explain`: which rule would allow or deny a request, and why (issue 4). The
 * caller must pass `adminAuth` (the admin middleware, which checks the `admin` grant via
 * `authorizeAdmin`). Answers JSON, never cached; bad bodies are `invalid_request` through the app's
 * OAuth error mapper.
 */
export function policyExplainRoutes(deps: { policy: PolicySource; adminAuth: MiddlewareHandler }): Hono {
  const app = new Hono()
  app.post('/admin/policy/explain', deps.adminAuth, limitBody(MAX_BODY), async (c) => {
    let raw: unknown
    try {
      raw = await c.req.json()
    } catch {
      throw new InvalidRequest('the body must be a JSON object')
    }
    const parsed = ExplainBody.safeParse(raw)
    if (!parsed.success) {
      const first = parsed.error.issues[0]!
      throw new InvalidRequest(`${first.path.join('.') || 'body'}: ${first.message}`)
    }
    const req = decisionRequestFrom(parsed.data)
    c.header('Cache-Control', 'no-store')
    return c.json(explain(deps.policy.current, req))
  })
  return app
}

/** The policy's view of an explain body (the console's explain form builds the same body). */
export function decisionRequestFrom(b: z.output<typeof ExplainBody>): DecisionRequest {
  const req: DecisionRequest = {
    subject: {
      iss: b.subject.iss,
      sub: b.subject.sub,
      ...(b.subject.client_id ? { client_id: b.subject.client_id } : {}),
      groups: b.subject.groups,
      scopes: b.subject.scopes,
      exp: Number.MAX_SAFE_INTEGER,
      ...(b.subject.preferred_username ? { preferred_username: b.subject.preferred_username } : {}),
      claims: {},
    },
    role: b.role,
    ...(b.token_type ? { tokenKind: b.token_type } : {}),
    audience: b.audience === undefined ? [] : Array.isArray(b.audience) ? b.audience : [b.audience],
    ...(b.scope ? { scopes: b.scope.split(' ').filter(Boolean) } : {}),
    ...(b.lifetime !== undefined ? { lifetime: b.lifetime } : {}),
    ...(b.host ? { host: b.host } : {}),
    params: b.params ?? {},
  }
  return req
}
