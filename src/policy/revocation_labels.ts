import type { Policy } from './compile.ts'

/** The roles and sites a policy can put into `ctb_role` / `ctb_site`: what `revoke --role/--site` may name. */
export interface RevocationLabels {
  readonly roles: ReadonlySet<string>
  readonly sites: ReadonlySet<string>
}

/**
 * Roles that mint tokens (not `admin`, which mints none) and every site a grant binds.
 * @example
 *   revocationLabels(holder.current).roles.has('startd')
 */
export function revocationLabels(policy: Policy): RevocationLabels {
  const sites = new Set<string>()
  for (const rule of policy.rules) for (const g of rule.grants.values()) for (const s of g.sites ?? []) sites.add(s)
  return { roles: new Set(policy.byRole.keys()), sites }
}
