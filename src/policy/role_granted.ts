import type { VerifiedSubject } from '../iam/subject.ts'
import type { Policy } from './compile.ts'
import { callerMatches } from './match_caller.ts'

/**
 * Whether some grant of `role` sits in a rule that matches `subject` (default deny). A stored credential's
 * job tokens need it of the user the credential was registered for on every read: creddMayFetch asks it
 * together with the credd's own part, and the Vault-compatible read, which has no credd, asks it alone.
 */
export function roleGrantedTo(policy: Policy, role: string, subject: VerifiedSubject): boolean {
  return (policy.byRole.get(role) ?? []).some(({ rule }) => callerMatches(rule.match, subject))
}
