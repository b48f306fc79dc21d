import type { LoadedTemplate } from './template/load_template.ts'

/** A schedd's user mapping as the template gave it: the node that names it and the domain users map into. */
export interface UserMapping { node: string; subjectDomain: string }

/**
 * Refuses a user_mapping.subject_domain that is the trust domain or the domain of any identity the broker issued
 * for this cluster's daemons (or its pilots' prefix). The mapfile maps every SciToken of the template's issuer
 * to `<sub>@<subject_domain>` and the ALLOW lists admit `*@<subject_domain>`: in a daemon's domain a user's
 * token of sub `condor` would be the central manager (ADMINISTRATOR and DAEMON everywhere), and `*@eps.TD` in a
 * schedd's ALLOW_WRITE would let every execute point submit. The daemon domains are the policy's, so they are
 * known only once the broker has answered; compared without case, as DNS names are.
 */
export function refuseDaemonUserDomains(t: LoadedTemplate, mappings: readonly UserMapping[], daemonIdentities: readonly string[], trustDomain: string): void {
  const daemonDomains = new Set([trustDomain, ...daemonIdentities.map((id) => id.slice(id.lastIndexOf('@') + 1))].map((d) => d.toLowerCase()))
  for (const m of mappings) {
    if (!daemonDomains.has(m.subjectDomain.toLowerCase())) continue
    t.fail(['topology_template', 'node_templates', m.node, 'properties', 'user_mapping', 'subject_domain'],
      `${m.node}.user_mapping.subject_domain (${m.subjectDomain}) is a domain the broker issues daemon identities in (${[...daemonDomains].sort().join(', ')}): users mapped there would be daemons; name the users' own domain`)
  }
}
