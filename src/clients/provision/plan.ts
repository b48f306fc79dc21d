import type { BrokerClient } from './broker_client.ts'
import { computeAttributes, nodeChecker, STAND_IN_JTI } from './check_cluster.ts'
import { PILOT_IDENTITY_SEPARATORS } from '../../contract/pilot.ts'
import { PilotIdentityPatternError, pilotAllowEntryOf } from './condor_config.ts'
import { MAX_PILOT_COUNT } from '../../contract/pilot.ts'
import { pilotAskProblem, pilotCountBeyondBroker, pilotRestartsProblem, pilotCredentialAsk, type PilotGrantLimits } from './pilot_group.ts'
import { ROLE_OF } from './render.ts'
import { loadTemplate } from './template/load_template.ts'
import { realiseTemplate, resolveInputs } from './template/resolve_template.ts'
import { refuseForeignTrustDomain } from './trust_domain.ts'
import { refuseDaemonUserDomains, type UserMapping } from './user_domains.ts'
import { unverifiedJwtPayload } from '../../lib/jwt_payload.ts'

export interface PlanStep {
  node: string
  request: string
  role: string
  host?: string
  site?: string
  /** What the policy answers now: allow with the rule and identity, or deny with the reason. */
  answer: 'allow' | 'deny'
  rule?: string
  identity?: string
  reason?: string
  /** A pilot enrolment: the count and lifetime (seconds) render asks for, and the lifetime up_to trims it to. */
  pilot_count?: number
  lifetime?: number
  granted_lifetime?: number
}

/** The operator's token, as IAM described it, for policy explain; read, not verified (the broker verifies). */
export function callerOf(bearer: string): Record<string, unknown> {
  let c: unknown
  try { c = unverifiedJwtPayload(bearer) } catch { c = undefined }
  // Worded "what: why", the shape the CLI reports as the user's mistake in one line.
  if (typeof c !== 'object' || c === null || Array.isArray(c)) throw new Error('bearer token: not a JWT with a claims object; provision plan needs an IAM access token')
  const claims = c as Record<string, unknown>
  const groups = (claims['wlcg.groups'] ?? claims.groups ?? []) as string[]
  return {
    iss: claims.iss, sub: claims.sub, ...(typeof claims.client_id === 'string' ? { client_id: claims.client_id } : {}),
    groups: Array.isArray(groups) ? groups : [], scopes: typeof claims.scope === 'string' ? claims.scope.split(' ').filter(Boolean) : [],
    ...(typeof claims.preferred_username === 'string' ? { preferred_username: claims.preferred_username } : {}),
  }
}

// An enrolment id as the broker makes them (32 hex digits): plan has no credential, only the shape matters.
const STAND_IN_ENROLMENT = '0'.repeat(32)

/**
 * The collector entry render would write for a pilot group, or why it could write none: render builds it from
 * the name the broker gives the group's pilots (pilot.identity with site and enrolment filled in), and plan
 * from the same template as the enrolment explanation gives it (`limits.identity`), with a stand-in enrolment.
 */
function pilotEntryPlan(limits: PilotGrantLimits | undefined, node: string, site: string): { entry: string } | { problem: string } {
  // Fail closed: a broker that does not say what pilots are named cannot be checked against any entry.
  if (typeof limits?.identity !== 'string') return { problem: 'the broker does not say the identity pilot tokens carry, so no collector entry can be built for them' }
  if (!limits.identity.includes('{enrolment}')) {
    return { problem: `the policy's pilot.identity ${limits.identity} does not name the pilot's enrolment, so one ALLOW entry would admit every cluster's pilots at site ${site}: upgrade the broker, or give pilot.identity the broker's default` }
  }
  // Each field the entry's head fixes must end in a separator, or the head also admits a longer site's pilots.
  for (const field of ['{site}', '{enrolment}']) {
    const next = limits.identity[limits.identity.indexOf(field) + field.length]
    if (next === undefined || !PILOT_IDENTITY_SEPARATORS.includes(next)) {
      return { problem: `${node}: the policy's pilot.identity ${limits.identity} ends ${field} with ${JSON.stringify(next ?? '')}, which a site name may hold, so no ALLOW entry can admit this group alone: follow it with one of ${PILOT_IDENTITY_SEPARATORS.split('').join(' ')}` }
    }
  }
  try {
    return { entry: pilotAllowEntryOf(limits.identity.replaceAll('{site}', site).replaceAll('{enrolment}', STAND_IN_ENROLMENT), node) }
  } catch (err) {
    if (!(err instanceof PilotIdentityPatternError)) throw err
    return { problem: err.message }
  }
}

/**
 * What `render` would request, node by node, and what the policy answers now (POST /admin/policy/explain):
 * nothing is minted and no certificate is signed (certificates are checked with POST /v1/certificates
 * and `dry_run`, which records nothing).
 */
export async function planCluster(o: { templateText: string; templateFile: string; inputs: Record<string, unknown>; inputsFile: string; broker: BrokerClient; bearer: string }): Promise<PlanStep[]> {
  const t = loadTemplate(o.templateText, o.templateFile)
  const inputs = resolveInputs(t, o.inputs, o.inputsFile)
  const subject = callerOf(o.bearer)
  const steps: PlanStep[] = []
  /** Every daemon identity render's ALLOW lists would name, a pilot group by its entry (only the domain is read). */
  const identities: string[] = []
  const userMappings: UserMapping[] = []
  let trustDomain = ''
  let cmNode = ''
  const ask = async (node: string, role: string, host: string | undefined, site: string | undefined, params: Record<string, string>, ips: string[] = []) => {
    const e = await o.broker.explain({ subject, role, token_type: 'idtoken', ...(host ? { host } : {}), params: { ...(site ? { site } : {}), ...params } })
    const d = e.decision as { allow: boolean; ruleId?: string; identity?: string; reason?: string; tokenKind?: string; audience?: unknown }
    // Render stops at the first token whose iss is not the template's trust domain; an allowed IDTOKEN's only
    // target is the trust domain its iss will carry, so the same refusal comes here, before anything is minted.
    if (d.allow && d.tokenKind === 'idtoken' && Array.isArray(d.audience)) refuseForeignTrustDomain(t, cmNode, trustDomain, d.audience[0])
    steps.push({
      node, request: role === 'pilot' ? 'pilot token (minted at each pilot start)' : 'IDTOKEN', role,
      ...(host ? { host } : {}), ...(site ? { site } : {}), answer: d.allow ? 'allow' : 'deny',
      // A pilot's identity names its SLURM job and node, known only when it starts.
      ...(d.ruleId ? { rule: d.ruleId } : {}), ...(d.identity && role !== 'pilot' ? { identity: d.identity } : {}), ...(d.reason ? { reason: d.reason } : {}),
    })
    // A pilot's is not: render's ALLOW lists admit the group by its entry (below), whatever the grant names.
    if (d.identity && role !== 'pilot') identities.push(d.identity)
    if (host) {
      const c = await o.broker.checkCertificate({ role, dns: [host], ip: ips, ...(site ? { site } : {}) })
      steps.push({
        node, request: 'host certificate (pool CA, SSL)', role, host, ...(site ? { site } : {}), answer: c.allow ? 'allow' : 'deny',
        ...(c.rule ? { rule: c.rule } : {}), ...(c.allow ? { reason: `valid ${c.lifetime}s` } : c.reason ? { reason: c.reason } : {}),
      })
    }
    return d.identity
  }
  /** The group's enrolment as render asks for it, decided by the broker as POST /token would decide it. */
  const askEnrolment = async (node: string, props: Record<string, unknown>) => {
    const site = String(props.site)
    const want = pilotCredentialAsk(props)
    // Beyond what any enrolment may carry, the broker refuses the request itself (explain answers 400, not a
    // decision): said here as a refusal of this group, so the rest of the plan is still shown.
    if (want.count > MAX_PILOT_COUNT) {
      steps.push({ node, request: 'pilot enrolment', role: 'pilot', site, answer: 'deny', pilot_count: want.count, lifetime: want.lifetime, reason: pilotCountBeyondBroker(props) })
      return undefined
    }
    const e = await o.broker.explain({ subject, role: 'pilot', params: { site }, pilot_enrolment: { pilot_count: want.count, lifetime: want.lifetime } })
    const d = e.decision as { allow: boolean; ruleId?: string; reason?: string; lifetime?: number }
    const limits = e.limits as PilotGrantLimits | undefined
    // The grant's bounds say which property to change; the broker's own reason covers every other refusal.
    const problem = limits ? pilotAskProblem(props, limits, d.ruleId) : undefined
    const trimmed = d.allow && d.lifetime !== undefined && d.lifetime < want.lifetime ? d.lifetime : undefined
    // Granted, yet not all it asks for: a trimmed lifetime, or more requeues kept for than runs may redeem.
    const caveats = [
      ...(trimmed !== undefined ? [`lifetime ${want.lifetime}s trimmed to ${trimmed}s (the grant's up_to): a requeue late in the job's life may find it expired`] : []),
      ...(d.allow && limits ? [pilotRestartsProblem(props, limits, d.ruleId)].filter((x) => x !== undefined) : []),
    ]
    steps.push({
      node, request: 'pilot enrolment', role: 'pilot', site, answer: d.allow ? 'allow' : 'deny',
      ...(d.ruleId ? { rule: d.ruleId } : {}), pilot_count: want.count, lifetime: want.lifetime,
      ...(trimmed !== undefined ? { granted_lifetime: trimmed } : {}),
      ...(caveats.length > 0 ? { reason: caveats.join('; ') } : {}),
      ...(!d.allow ? { reason: problem ?? d.reason ?? 'refused' } : {}),
    })
    return d.allow ? limits : undefined
  }
  const check = nodeChecker(t, o.broker.base)
  await realiseTemplate(t, inputs, async (n, attrs) => {
    // Every check before the broker is asked about this node, as render makes them.
    const hosts = check(n, attrs)
    const site = n.properties.site as string | undefined
    const ipsOf = () => (attrs[n.requirements.host!]!.private_address as string[] | undefined) ?? []
    switch (n.type) {
      case 'htc.nodes.Compute': return computeAttributes(n)
      case 'htc.nodes.CentralManager': trustDomain = String(n.properties.trust_domain); cmNode = n.name; return { collector_address: `${hosts[0]}:9618`, identity: await ask(n.name, ROLE_OF[n.type], hosts[0], site, {}, ipsOf()), issued_token_jtis: [STAND_IN_JTI] }
      case 'htc.nodes.Schedd':
        if (n.properties.user_mapping) userMappings.push({ node: n.name, subjectDomain: (n.properties.user_mapping as { subject_domain: string }).subject_domain })
        return { name: n.properties.name, identity: await ask(n.name, ROLE_OF[n.type], hosts[0], site, {}, ipsOf()), issued_token_jtis: [STAND_IN_JTI] }
      case 'htc.nodes.Startd': {
        const ids = []
        for (const host of hosts) ids.push(await ask(n.name, ROLE_OF[n.type], host, site, {}, ipsOf()))
        // The attributes render gives (one jti per token), so an output reading them plans as it renders.
        return { hostnames: hosts, identities: ids, issued_token_jtis: hosts.map(() => STAND_IN_JTI) }
      }
      case 'htc.nodes.SlurmPilot':
        {
          const limits = await askEnrolment(n.name, n.properties)
          await ask(n.name, ROLE_OF[n.type], undefined, site, { slurm_job_id: '0' })
          // The collector admits the group by the entry render writes. Pilot tokens carry the grant's
          // pilot.identity (not its own identity, which only a direct IDTOKEN request gets): where the two
          // disagree every pilot of the group is refused when it starts.
          const planned = limits ? pilotEntryPlan(limits, n.name, String(site)) : undefined
          if (planned && 'entry' in planned) identities.push(planned.entry)
          const step = steps[steps.length - 1]!
          if (planned && 'problem' in planned && step.answer === 'allow') {
            step.answer = 'deny'
            step.reason = planned.problem
          }
        }
        return { site, issued_token_jtis: [STAND_IN_JTI], slurm_job_ids: [] }
    }
  })
  // Render refuses this once the broker has answered; plan with the identities the policy would give.
  refuseDaemonUserDomains(t, userMappings, identities, trustDomain)
  return steps
}
