import type { VerifiedSubject } from '../iam/subject.ts'
import type { Policy } from './compile.ts'
import { callerMatches } from './match_caller.ts'

/** A host certificate request as the policy sees it: who asks, for which role and site, naming what. */
export interface CertificateDecisionRequest {
  subject: VerifiedSubject
  role: string
  /** The caller's claim to one of the grant's sites; absent picks the grant's only site. */
  site?: string
  dns: readonly string[]
  ip: readonly string[]
  /** Seconds; absent: the grant's max. */
  lifetime?: number
}

export type CertificateDecision =
  | { allow: true; ruleId: string; role: string; site?: string; lifetime: number }
  | { allow: false; error: 'unauthorized_client' | 'invalid_target'; reason: string }

/**
 * Whether the caller may have these names certified for this role. Default deny: a rule must match the
 * caller and grant the role with a `certificate:` block; every DNS name must match the grant's hosts,
 * every IP its `ip_addresses`; the site must be one the grant binds. The lifetime is capped at the
 * grant's max (never refused for being long: a certificate is cheap to re-request). Pure.
 * @see docs/pool-ca.md
 */
export function decideCertificate(policy: Policy, req: CertificateDecisionRequest): CertificateDecision {
  const candidates = policy.byRole.get(req.role) ?? []
  let first: CertificateDecision | undefined
  for (const { rule, grant } of candidates) {
    if (!callerMatches(rule.match, req.subject)) continue
    const deny = (error: 'unauthorized_client' | 'invalid_target', reason: string): CertificateDecision => ({ allow: false, error, reason })
    let d: CertificateDecision
    if (!grant.certificate) d = deny('unauthorized_client', `rule ${rule.id} grants role ${req.role} no host certificate`)
    else if (req.site !== undefined && !grant.sites?.includes(req.site)) d = deny('invalid_target', `site ${req.site} is not bound to role ${req.role} by rule ${rule.id}`)
    else if (req.site === undefined && grant.sites !== undefined && grant.sites.length > 1) d = deny('invalid_target', `rule ${rule.id} binds several sites: name one`)
    else {
      const badDns = req.dns.find((h) => !grant.hosts?.test(h))
      const badIp = req.ip.find((a) => !grant.certificate!.ipAddresses?.test(a))
      if (badDns !== undefined) d = deny('invalid_target', `host ${badDns} is not allowed for role ${req.role}`)
      else if (badIp !== undefined) d = deny('invalid_target', `address ${badIp} is not allowed in a certificate for role ${req.role}`)
      else {
        const site = req.site ?? grant.sites?.[0]
        const max = grant.certificate.maxLifetime
        return { allow: true, ruleId: rule.id, role: req.role, ...(site !== undefined ? { site } : {}), lifetime: Math.min(req.lifetime ?? max, max) }
      }
    }
    first ??= d
  }
  return first ?? { allow: false, error: 'unauthorized_client', reason: `no policy rule grants role ${req.role} a host certificate to this caller` }
}
