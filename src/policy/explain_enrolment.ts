import type { Policy } from './compile.ts'
import type { TemplatePart } from './template.ts'
import { decideEnrolment, type EnrolmentDecision, type EnrolmentRequest } from './pilot_decision.ts'

/** The pilot grant's bounds of the rule that decided, in the policy file's own names. */
export interface EnrolmentLimits {
  max_count: number
  enrolment_lifetime: { default: number; max: number }
  up_to: boolean
  /** pilot.max_restarts: runs of a requeued job past it are refused at redemption. */
  max_restarts: number
  /**
   * pilot.identity with the broker's constants filled in; {site}, {enrolment}, {slurm_job_id} and {node} remain. Pilot tokens
   * carry it, not the grant's own identity, so a provisioning plan checks the collector's ALLOW entry against it.
   */
  identity: string
}

export interface EnrolmentExplanation {
  /** Exactly what POST /token decides for the same request, plus which asked values up_to trimmed. */
  decision: EnrolmentDecision & { trimmed?: ['lifetime'] }
  /** Absent when no rule with a pilot grant for the role decided (the caller matched none). */
  limits?: EnrolmentLimits
  policyDigest: string
}

/**
 * Explains a pilot enrolment request with the decision the token endpoint makes (decideEnrolment), and the
 * bounds of the deciding rule's pilot grant, so a provisioning plan can say which value to change rather than
 * only that the broker will refuse.
 */
export function explainEnrolment(policy: Policy, req: EnrolmentRequest): EnrolmentExplanation {
  const d = decideEnrolment(policy, req)
  let limits: EnrolmentLimits | undefined
  if (d.ruleId !== undefined) {
    for (const { rule, grant } of policy.byRole.get(req.role) ?? []) {
      if (rule.id !== d.ruleId || !grant.pilot) continue
      const p = grant.pilot
      limits = { max_count: p.maxCount, enrolment_lifetime: { default: p.enrolmentLifetime.default, max: p.enrolmentLifetime.max }, up_to: grant.upTo, max_restarts: p.maxRestarts, identity: templateText(p.identity) }
      break
    }
  }
  const trimmed = d.allow && req.lifetime !== undefined && d.lifetime < req.lifetime
  return { decision: trimmed ? { ...d, trimmed: ['lifetime'] } : d, ...(limits ? { limits } : {}), policyDigest: policy.digest }
}

/** A parsed template written back (a literal never holds a brace, so this is the template it was parsed from). */
function templateText(parts: readonly TemplatePart[]): string {
  return parts.map((part) => 'literal' in part ? part.literal : `{${part.placeholder}}`).join('')
}
