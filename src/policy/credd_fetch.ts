import type { VerifiedSubject } from '../iam/subject.ts'
import { quote } from '../lib/quote.ts'
import type { CompiledGrant, Policy } from './compile.ts'
import { callerMatches } from './match_caller.ts'

/** The credd asking for a user's job token, as its broker-issued IDTOKEN names it. */
export interface CreddClaims {
  /** `ctb_role`, set from the credd's policy grant at issuance. */
  role: string
  /** `ctb_site`, when the credd's grant binds one. */
  site?: string
}

/**
 * Whether the policy lets this credd fetch job tokens under `role` (the grant a provider names). Default
 * deny: some grant of that role must list the credd's role under `fetched_by.roles` and, if it lists
 * sites, the credd's site. With `subject` (the user the credential was registered for) only grants of rules
 * that match that user count, so a credd allowed for one group's rule fetches nothing for another's.
 */
export function creddMayFetch(policy: Policy, role: string, credd: CreddClaims, subject?: VerifiedSubject): { allow: true } | { allow: false; reason: string } {
  for (const { rule, grant } of policy.byRole.get(role) ?? []) {
    if (!fetchableBy(grant, credd)) continue
    if (subject && !callerMatches(rule.match, subject)) continue
    return { allow: true }
  }
  const who = `a credd of role ${quote(credd.role)}${credd.site !== undefined ? ` at site ${quote(credd.site)}` : ''}`
  return { allow: false, reason: `no policy grant of role ${quote(role)} lets ${who} fetch job tokens (fetched_by)` }
}

/**
 * The policy a job token fetched by this credd is decided under: `role` keeps only the grants whose
 * fetched_by names the credd. Another rule's grant of the role (other sites, no fetched_by) must not
 * widen what this credd is handed, as creddMayFetch lets it in on a grant that does name it.
 */
export function policyForCredd(policy: Policy, role: string, credd: CreddClaims): Policy {
  const grants = (policy.byRole.get(role) ?? []).filter(({ grant }) => fetchableBy(grant, credd))
  return { ...policy, byRole: new Map([[role, grants]]) }
}

function fetchableBy(grant: CompiledGrant, credd: CreddClaims): boolean {
  const f = grant.fetchedBy
  if (!f || !f.roles.has(credd.role)) return false
  return !f.sites || (credd.site !== undefined && f.sites.has(credd.site))
}

/**
 * Whether the policy lets the Vault-compatible listener serve `subject`'s job tokens under `role`. A Vault
 * read is a fetch by an access point's Vault credmon whose identity the broker cannot check beyond the
 * user's Vault token, so no role or site in `fetched_by` can be held against it: default deny, and only a
 * grant whose `fetched_by` says `vault_reads: true`, in a rule that matches the user, lets it in.
 */
export function vaultMayRead(policy: Policy, role: string, subject: VerifiedSubject): { allow: true } | { allow: false; reason: string } {
  const grants = (policy.byRole.get(role) ?? []).filter(({ rule }) => callerMatches(rule.match, subject))
  if (grants.some(({ grant }) => grant.fetchedBy?.vaultReads)) return { allow: true }
  const why = grants.length === 0 ? `no policy rule that matches this credential's user grants role ${quote(role)}`
    : grants.some(({ grant }) => grant.fetchedBy) ? `the grant of role ${quote(role)} does not allow Vault reads (fetched_by.vault_reads); use broker mode or ask the operator`
    : `the grant of role ${quote(role)} has no fetched_by: neither credds nor Vault reads may fetch its job tokens`
  return { allow: false, reason: why }
}

/**
 * The policy a Vault read is decided under: `role` keeps only the grants that allow Vault reads, so another
 * rule's grant of the role that does not (a site-bound one) never widens what the Vault token is handed.
 */
export function policyForVault(policy: Policy, role: string): Policy {
  const grants = (policy.byRole.get(role) ?? []).filter(({ grant }) => grant.fetchedBy?.vaultReads === true)
  return { ...policy, byRole: new Map([[role, grants]]) }
}
