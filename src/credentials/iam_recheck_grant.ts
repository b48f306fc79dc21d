import type { VerifiedSubject } from '../iam/subject.ts'

/**
 * The IAM scopes a scitoken-kind credential's refresh token is obtained and refreshed with: the group
 * scopes of the registering token (so IAM puts the same groups, optional ones included, in its answer),
 * plain `wlcg.groups` when that token carried groups without naming a group scope (IAM profile), and
 * `offline_access`. Derived from the stored claims, so registration and every refresh ask for the same.
 */
export function recheckScopes(subject: Pick<VerifiedSubject, 'scopes' | 'groups'>): string[] {
  const groups = subject.scopes.filter(isGroupScope)
  if (groups.length === 0 && subject.groups.length > 0) groups.push('wlcg.groups')
  return [...groups, 'offline_access']
}

/**
 * The audience of IAM's recheck token: the first `aud` the broker accepts from that issuer, so the
 * token passes the inbound verifier; none when the broker does not check `aud`.
 */
export function recheckAudience(accepted: readonly string[] | undefined): string[] {
  return accepted && accepted.length > 0 ? [accepted[0]!] : []
}

function isGroupScope(s: string): boolean {
  return s === 'wlcg.groups' || s.startsWith('wlcg.groups:')
}

/**
 * The caller a scitoken-kind credential is decided on, at registration and at every mint: only what IAM's
 * rechecks renew. `iss` and `sub` never change and the groups are IAM's latest; the registering token's
 * group scopes are asked for again at each recheck. Its other scopes and its `client_id` are the user's
 * client's at registration, which IAM's answer (the broker client's token) never restates: a rule that
 * needed them would go on admitting a user IAM had since withdrawn them from, so it admits none here.
 */
export function renewedCaller(subject: VerifiedSubject): VerifiedSubject {
  const { client_id: _registeringClient, ...rest } = subject
  return { ...rest, scopes: subject.scopes.filter(isGroupScope) }
}
