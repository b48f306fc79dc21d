import type { VerifiedSubject } from '../iam/subject.ts'
import type { Policy } from './compile.ts'
import type { Decision, DecisionRequest } from './decision.ts'
import { evaluateGrant, type Denial } from './evaluate_grant.ts'
import { newJti } from '../lib/jti.ts'
import { quote } from '../lib/quote.ts'
import { callerMatches } from './match_caller.ts'
import { ADMIN_ROLE } from './schema.ts'

export interface DecideOptions {
  /** Source of the token's `jti` (lib/jti.ts: 32 lowercase hex, as condor_token_create writes it); injected by tests. */
  newJti?: () => string
}

/**
 * The denial when no rule grants the role to the caller. RFC 6749 §5.2 `unauthorized_client` ("not
 * authorized to use this authorization grant type"), not `access_denied`, which RFC 6749 defines only
 * for the authorization endpoint (§4.1.2.1) and RFC 8693 §2.2.2 does not add to the token endpoint.
 * The text is the same whether the role exists or not, so callers cannot enumerate roles.
 */
export function roleNotGranted(role: string): Denial {
  return { allow: false, error: 'unauthorized_client', reason: `no policy rule grants role ${quote(role)} to this caller` }
}

/**
 * Decides one issuance request. Default deny: a request is allowed only by a rule whose `match`
 * admits the caller and whose grant for the role admits every requested parameter. Rules are tried
 * in order (files by name, then file order); the first that allows wins. If none allows, the first
 * matching rule's refusal is returned (its error code: invalid_scope, invalid_target, …), otherwise
 * `unauthorized_client`. Pure apart from `newJti`; all patterns were compiled at load.
 * @see RFC 8693 §2.2.2; RFC 6749 §5.2; docs/htcondor-tokens.md §3.3, §3.4
 * @example
 *   const d = decide(holder.current, { subject, role: 'schedd', audience: [], host: 'ap1.example.org' })
 *   if (!d.allow) throw errorFor(d)   // d.error is the OAuth code, d.reason the safe description
 */
export function decide(policy: Policy, req: DecisionRequest, options: DecideOptions = {}): Decision {
  if (req.role === ADMIN_ROLE) {
    return { allow: false, error: 'invalid_request', reason: `role ${ADMIN_ROLE} opens the admin API and is never issued as a token` }
  }
  const candidates = policy.byRole.get(req.role)
  if (!candidates) return roleNotGranted(req.role)
  let jti: string | undefined
  let first: Decision | undefined
  for (const { rule, grant } of candidates) {
    if (!callerMatches(rule.match, req.subject)) continue
    jti ??= (options.newJti ?? newJti)()
    const d = evaluateGrant(rule.id, grant, req, policy.context, jti)
    if (d.allow) return d
    first ??= d
  }
  return first ?? roleNotGranted(req.role)
}

/**
 * Whether a verified caller may use the admin API (a rule granting the `admin` role matches it).
 * For the admin-auth middleware.
 */
export function authorizeAdmin(policy: Policy, subject: VerifiedSubject): { allow: true; ruleId: string } | { allow: false; reason: string } {
  for (const rule of policy.adminRules) {
    if (callerMatches(rule.match, subject)) return { allow: true, ruleId: rule.id }
  }
  return { allow: false, reason: 'no policy rule grants the admin role to this caller' }
}
