import type { Policy } from './compile.ts'
import { newJti } from '../lib/jti.ts'
import { roleNotGranted, type DecideOptions } from './decide.ts'
import type { Decision, DecisionRequest } from './decision.ts'
import { evaluateGrant } from './evaluate_grant.ts'
import { callerMismatches } from './match_caller.ts'
import { ADMIN_ROLE } from './schema.ts'

/**
 * Where an allowed token is aimed, in words: an IDTOKEN has no aud claim (its iss is the pool's trust
 * domain, which the decision carries as its only target), so calling that an audience misleads an admin.
 */
export function targetOf(d: { tokenKind: string; audience: readonly string[] }): string {
  return d.tokenKind === 'idtoken' ? `trust domain ${d.audience.join(' ')} (an IDTOKEN has no aud)` : `audience ${d.audience.join(' ')}`
}

/** How one rule treated the request. */
export interface RuleTrace {
  ruleId: string
  /** `file:line:col` of the rule. */
  source: string
  description?: string
  /** caller-mismatch: `match` did not admit the caller; role-not-granted: it did, but the rule has no grant for the role. */
  outcome: 'allowed' | 'denied' | 'caller-mismatch' | 'role-not-granted'
  /** Why: the mismatches, the missing role, or the refusal's description. */
  reasons: string[]
  error?: string
  /** The rule whose result became the decision. */
  decisive: boolean
}

export interface Explanation {
  decision: Decision
  rules: RuleTrace[]
  policyDigest: string
}

/**
 * Explains a decision: every rule in evaluation order, whether its `match` admitted the caller, and
 * what its grant for the role said. `decision` is what `decide` returns for the same request (the
 * unit tests hold the two to that). Slower than `decide`; for `policy explain` and the admin API only.
 */
export function explain(policy: Policy, req: DecisionRequest, options: DecideOptions = {}): Explanation {
  const jti = (options.newJti ?? newJti)()
  const rules: RuleTrace[] = []
  let decisive: RuleTrace | undefined
  let decision: Decision | undefined
  let firstDenial: { trace: RuleTrace; decision: Decision } | undefined
  for (const rule of policy.rules) {
    const base = {
      ruleId: rule.id,
      source: `${rule.source.file}:${rule.source.line}:${rule.source.col}`,
      ...(rule.description !== undefined ? { description: rule.description } : {}),
      decisive: false,
    }
    const mismatches = callerMismatches(rule.match, req.subject)
    if (mismatches.length > 0) {
      rules.push({ ...base, outcome: 'caller-mismatch', reasons: mismatches })
      continue
    }
    const grant = req.role === ADMIN_ROLE ? undefined : rule.grants.get(req.role)
    if (!grant) {
      const roles = [...rule.grants.keys(), ...(rule.admin ? [ADMIN_ROLE] : [])]
      rules.push({ ...base, outcome: 'role-not-granted', reasons: [`caller matched, but this rule grants ${roles.join(', ')}, not ${req.role}`] })
      continue
    }
    const d = evaluateGrant(rule.id, grant, req, policy.context, jti)
    const trace: RuleTrace = d.allow
      ? { ...base, outcome: 'allowed', reasons: [`caller matched; issues ${d.tokenKind} for ${d.identity} with ${d.scopes.join(' ')}, ${targetOf(d)}, lifetime ${d.lifetime}s${d.trimmed ? ` (trimmed: ${d.trimmed.join(', ')})` : ''}`] }
      : { ...base, outcome: 'denied', reasons: [`caller matched, but: ${d.reason}`], error: d.error }
    rules.push(trace)
    if (d.allow && !decision) { decision = d; decisive = trace }
    if (!d.allow && !firstDenial) firstDenial = { trace, decision: d }
  }
  if (!decision && firstDenial) { decision = firstDenial.decision; decisive = firstDenial.trace }
  if (decisive) decisive.decisive = true
  if (req.role === ADMIN_ROLE) {
    decision = { allow: false, error: 'invalid_request', reason: `role ${ADMIN_ROLE} opens the admin API and is never issued as a token` }
  }
  return { decision: decision ?? roleNotGranted(req.role), rules, policyDigest: policy.digest }
}
