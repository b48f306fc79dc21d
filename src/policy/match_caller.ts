import type { VerifiedSubject } from '../iam/subject.ts'
import type { CompiledMatch } from './compile.ts'
import { quote } from '../lib/quote.ts'

/**
 * Whether a verified IAM caller satisfies a rule's `match`. Issuers are compared as exact strings,
 * trailing slash included (docs/iam-and-wlcg.md §1.2); groups and scopes by exact membership.
 * This is the hot-path form: it stops at the first mismatch and builds no strings.
 */
export function callerMatches(m: CompiledMatch, s: VerifiedSubject): boolean {
  if (!m.issuers.has(s.iss)) return false
  if (m.subs && !m.subs.has(s.sub)) return false
  if (m.clientIds && (s.client_id === undefined || !m.clientIds.has(s.client_id))) return false
  if (m.groupsAnyOf && !m.groupsAnyOf.some((g) => s.groups.includes(g))) return false
  if (m.groupsAllOf && !m.groupsAllOf.every((g) => s.groups.includes(g))) return false
  if (m.scopesAnyOf && !m.scopesAnyOf.some((x) => s.scopes.includes(x))) return false
  if (m.scopesAllOf && !m.scopesAllOf.every((x) => s.scopes.includes(x))) return false
  return true
}

const list = (xs: Iterable<string>) => [...xs].map((x) => quote(x)).join(', ')

/**
 * Every reason a caller does not satisfy a rule's `match` (empty when it does), for `policy explain`.
 * Must agree with `callerMatches`; the unit tests check both on the same rows.
 */
export function callerMismatches(m: CompiledMatch, s: VerifiedSubject): string[] {
  const why: string[] = []
  if (!m.issuers.has(s.iss)) why.push(`issuer ${quote(s.iss)} is not ${list(m.issuers)} (compared exactly, trailing slash included)`)
  if (m.subs && !m.subs.has(s.sub)) why.push(`sub ${quote(s.sub)} is not ${list(m.subs)}`)
  if (m.clientIds && (s.client_id === undefined || !m.clientIds.has(s.client_id))) {
    why.push(`client_id ${s.client_id === undefined ? '(none)' : quote(s.client_id)} is not ${list(m.clientIds)}`)
  }
  if (m.groupsAnyOf && !m.groupsAnyOf.some((g) => s.groups.includes(g))) why.push(`caller is in none of the groups ${list(m.groupsAnyOf)}`)
  if (m.groupsAllOf) {
    const missing = m.groupsAllOf.filter((g) => !s.groups.includes(g))
    if (missing.length > 0) why.push(`caller is not in the groups ${list(missing)}`)
  }
  if (m.scopesAnyOf && !m.scopesAnyOf.some((x) => s.scopes.includes(x))) why.push(`caller's token has none of the scopes ${list(m.scopesAnyOf)}`)
  if (m.scopesAllOf) {
    const missing = m.scopesAllOf.filter((x) => !s.scopes.includes(x))
    if (missing.length > 0) why.push(`caller's token lacks the scopes ${list(missing)}`)
  }
  return why
}
