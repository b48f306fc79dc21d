import type { VerifiedSubject } from '../iam/subject.ts'
import { quote } from '../lib/quote.ts'
import type { CompiledGrant, CompiledPilotGrant, Policy } from './compile.ts'
import type { Denial } from './evaluate_grant.ts'
import { callerMatches } from './match_caller.ts'
import { SAFE_VALUE } from './patterns.ts'
import { roleNotGranted } from './decide.ts'
import type { TemplatePart } from './template.ts'

/** A request for a pilot enrolment credential, as the policy sees it. */
export interface EnrolmentRequest {
  subject: VerifiedSubject
  role: string
  /** The caller's claim to one of the grant's sites; absent: the grant's only site. */
  site?: string
  count: number
  /** Seconds the credential stays redeemable; absent: the grant's default. */
  lifetime?: number
}

export type EnrolmentDecision =
  | {
      allow: true
      ruleId: string
      role: string
      /** From the grant only: the credential's, and every pilot token's, `ctb_site`. */
      site: string
      count: number
      lifetime: number
    }
  | Denial

/**
 * Decides an enrolment request: default deny, first rule whose `match` admits the caller and whose grant
 * for the role has `pilot:` and admits the site, count and lifetime.
 * @see docs/pilots.md
 */
export function decideEnrolment(policy: Policy, req: EnrolmentRequest): EnrolmentDecision {
  let first: Denial | undefined
  for (const { rule, grant } of policy.byRole.get(req.role) ?? []) {
    if (!callerMatches(rule.match, req.subject)) continue
    const d = evaluateEnrolment(rule.id, grant, req)
    if (d.allow) return d
    first ??= d
  }
  return first ?? roleNotGranted(req.role)
}

function evaluateEnrolment(ruleId: string, g: CompiledGrant, req: EnrolmentRequest): EnrolmentDecision {
  const deny = (error: Denial['error'], reason: string): Denial => ({ allow: false, ruleId, error, reason })
  const p = g.pilot
  if (!p || !g.sites) return deny('unauthorized_client', `role ${g.role} has no pilot enrolment in this rule`)
  let site: string
  if (req.site === undefined) {
    if (g.sites.length !== 1) return deny('invalid_request', `site is required for role ${g.role}: this rule binds ${g.sites.join(', ')}`)
    site = g.sites[0]!
  } else {
    if (!SAFE_VALUE.test(req.site)) return deny('invalid_request', 'site must be letters, digits, _ . - (at most 128)')
    if (!g.sites.includes(req.site)) return deny('unauthorized_client', `site=${req.site} is not allowed for role ${g.role}: this rule binds ${g.sites.join(', ')}`)
    site = req.site
  }
  if (req.count > p.maxCount) return deny('invalid_request', `pilot_count ${req.count} exceeds the maximum ${p.maxCount} for role ${g.role}`)
  let lifetime = p.enrolmentLifetime.default
  if (req.lifetime !== undefined) {
    if (req.lifetime <= p.enrolmentLifetime.max) lifetime = req.lifetime
    else if (g.upTo) lifetime = p.enrolmentLifetime.max
    else return deny('invalid_request', `lifetime ${req.lifetime}s exceeds the maximum ${p.enrolmentLifetime.max}s of a pilot enrolment for role ${g.role}`)
  }
  return { allow: true, ruleId, role: g.role, site, count: req.count, lifetime }
}

/**
 * The pilot grant a credential or pilot token was issued under, if the policy in force still has it: a rule
 * removed, or a site dropped from it, stops redemption and renewal at the next reload.
 */
export function pilotGrantOf(policy: Policy, ruleId: string, role: string, site: string): { grant: CompiledGrant; pilot: CompiledPilotGrant } | undefined {
  for (const { rule, grant } of policy.byRole.get(role) ?? []) {
    if (rule.id !== ruleId) continue
    if (grant.pilot && grant.sites?.includes(site)) return { grant, pilot: grant.pilot }
  }
  return undefined
}

/** Renders a pilot identity template (constants already folded) with the pilot's site, enrolment, job and node. */
export function renderPilotIdentity(parts: readonly TemplatePart[], values: { site: string; enrolment: string; slurm_job_id: string; node: string }): string {
  let out = ''
  for (const part of parts) {
    if ('literal' in part) { out += part.literal; continue }
    const v = (values as Record<string, string | undefined>)[part.placeholder]
    if (v === undefined || !SAFE_VALUE.test(v)) throw new TypeError(`pilot identity placeholder ${quote(part.placeholder)} has no usable value`)
    out += v
  }
  return out
}

/**
 * What one enrolment's pilots will be called: the identity with its site and enrolment filled in, `{slurm_job_id}`
 * and `{node}` left as they are (known only at pilot start). Told to the caller that enrolled, so a provisioned
 * collector's ALLOW entry is built from the policy in force, not from a shape the client assumes.
 */
export function pilotIdentityPattern(parts: readonly TemplatePart[], values: { site: string; enrolment: string }): string {
  return parts.map((part) => {
    if ('literal' in part) return part.literal
    const v = (values as Record<string, string | undefined>)[part.placeholder]
    return v === undefined ? `{${part.placeholder}}` : v
  }).join('')
}
