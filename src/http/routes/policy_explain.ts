import { Hono, type MiddlewareHandler } from 'hono'
import { z } from 'zod'
import { InvalidRequest } from '../../errors.ts'
import type { Policy } from '../../policy/compile.ts'
import type { DecisionRequest } from '../../policy/decision.ts'
import { MAX_PILOT_COUNT } from '../../contract/pilot.ts'
import { explain, type Explanation } from '../../policy/explain.ts'
import { explainCallerBlock, type CallerBlockDenial } from '../../revocation/explain_caller_block.ts'
import type { CallerBlockSource, IssuanceBlocks } from '../../revocation/revocation_checker.ts'
import { explainEnrolment } from '../../policy/explain_enrolment.ts'
import { limitBody } from '../middleware/body_limit.ts'
import { parseOrRefuse } from '../zod_refusal.ts'

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
  /**
   * Explain a pilot enrolment credential request instead of a token (docs/pilots.md): the count and the
   * lifetime it asks for, the site in `params.site`. Decided as POST /token decides it.
   */
  pilot_enrolment: z.strictObject({
    pilot_count: z.number().int().min(1).max(MAX_PILOT_COUNT),
    lifetime: z.number().int().positive().optional(),
  }).optional(),
  // POST /token refuses an enrolment stating a redemption's slurm_job_id; explain refuses any param but site.
}).refine((b) => !b.pilot_enrolment || (b.token_type === undefined && b.audience === undefined && b.scope === undefined && b.lifetime === undefined && b.host === undefined
  && Object.keys(b.params ?? {}).every((k) => k === 'site')),
  { message: 'a pilot enrolment is explained from role, params.site and pilot_enrolment only', path: ['pilot_enrolment'] })

/**
 * `POST /admin/policy/explain`: which rule would allow or deny a request, and why (issue 4). The
 * caller must pass `adminAuth` (the admin middleware, which checks the `admin` grant via
 * `authorizeAdmin`). Answers JSON, never cached; bad bodies are `invalid_request` through the app's
 * OAuth error mapper.
 */
export function policyExplainRoutes(deps: { policy: PolicySource; adminAuth: MiddlewareHandler; blocks: ExplainBlocks }): Hono {
  const app = new Hono()
  app.post('/admin/policy/explain', deps.adminAuth, limitBody(MAX_BODY), async (c) => {
    let raw: unknown
    try {
      raw = await c.req.json()
    } catch {
      throw new InvalidRequest('the body must be a JSON object')
    }
    // The API's one refusal of a body: an unknown key named, never copied whole (zod's message repeats it).
    const body = parseOrRefuse(ExplainBody, raw, 'field')
    c.header('Cache-Control', 'no-store')
    const e = body.pilot_enrolment
    if (e) {
      // The token endpoint refuses a blocked caller before it asks the policy, for an enrolment as for a token.
      const blocked = explainCallerBlock(deps.blocks, body.subject)
      if (blocked) return c.json({ decision: blocked, rules: [], policyDigest: deps.policy.current.digest })
      const site = body.params?.site
      // The same request the token endpoint decides; an enrolment has no rule-by-rule trace (rules: []).
      const x = explainEnrolment(deps.policy.current, {
        subject: decisionRequestFrom(body).subject, role: body.role, count: e.pilot_count,
        ...(site !== undefined ? { site } : {}), ...(e.lifetime !== undefined ? { lifetime: e.lifetime } : {}),
      })
      return c.json({ ...x, rules: [] })
    }
    return c.json(withRevocationBlocks(explain(deps.policy.current, decisionRequestFrom(body)), deps.blocks, body.subject))
  })
  return app
}

/** What explain asks of the revocations in force: the checks the token endpoint makes around the policy. */
export type ExplainBlocks = CallerBlockSource & Pick<IssuanceBlocks, 'blockedIdentity'>

/**
 * A token explanation as the token endpoint decides with the revocations in force: a blocked caller is refused
 * before the policy is asked (withCallerBlock), and an allowed token whose identity an active `sub` entry names
 * after it, with the rule that allowed it (exchange.ts); a narrowed IAM token's sub is the caller's own.
 */
export function withRevocationBlocks(x: Explanation, blocks: ExplainBlocks, caller: Parameters<typeof explainCallerBlock>[1]): Explanation {
  const callerBlocked = explainCallerBlock(blocks, caller)
  if (callerBlocked) return withCallerBlock(x, callerBlocked)
  const d = x.decision
  const identityBlocked = d.allow && d.tokenKind !== 'access_token' ? blocks.blockedIdentity(d.identity) : undefined
  return d.allow && identityBlocked ? { ...x, decision: { allow: false, error: 'unauthorized_client', ruleId: d.ruleId, reason: identityBlocked } } : x
}

/**
 * An explanation whose caller a revocation blocks: the rules as the policy would judge them (what lifting the
 * entry would give), none decisive, and the block as the decision, as the token endpoint decides.
 */
export function withCallerBlock(x: Explanation, blocked: CallerBlockDenial | undefined): Explanation {
  return blocked ? { ...x, decision: blocked, rules: x.rules.map((r) => ({ ...r, decisive: false })) } : x
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
